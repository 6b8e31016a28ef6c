"""The plugin's entry point: its family row (kept import-light: no torch here)."""

from vlmzoo.families import Family

FAMILY = Family("tinyplug", "tinyplug.model:TinyPlugModel", model_types=("tinyplug",), cards="tinyplug/cards")
NOT_A_FAMILY = {"name": "broken"}

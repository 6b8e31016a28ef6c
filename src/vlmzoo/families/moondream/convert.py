"""moondream2's official checkpoint files -> the modules in modeling.py.

The Hugging Face repo vikhyatk/moondream2 (revisions from 2025-01-09 on; the port follows
2025-06-21, code github.com/vikhyat/moondream at 44146f1) publishes ``config.json``
(``model_type`` "moondream1", class HfMoondream, the architecture in its ``config`` section)
and ``model.safetensors``, whose tensors are the official MoondreamModel's under "model.".
modeling.py names its modules as MoondreamModel does, so the table is one rule. The 2024
revisions ("vision_encoder.encoder.model.visual...", "text_model.transformer.h...") and
moondream1 are other layouts, not read here: they are refused by name.
"""

from __future__ import annotations

from pathlib import Path

from vlmzoo.errors import UnknownModelError
from vlmzoo.families import hf
from vlmzoo.families.checkpoints import load_official
from vlmzoo.families.moondream.modeling import Moondream, MoondreamConfig

MODEL_TYPE = "moondream1"  # what the 2025 revisions' config.json says
ARCHITECTURE = "HfMoondream"
# official tensor name (regex) -> module path in modeling.py, first match wins
TABLE: list[tuple[str, str]] = [
    (r"model\.((?:vision|text|region)\..+)", r"\1"),
]


def read_config(path: Path) -> MoondreamConfig:
    raw = hf.read_config(path)
    if raw.get("model_type") != MODEL_TYPE or ARCHITECTURE not in (raw.get("architectures") or []):
        raise UnknownModelError(
            f"{path}: not a moondream2 checkpoint of the layout vlmzoo reads (model_type {MODEL_TYPE!r}, "
            f"architecture {ARCHITECTURE}, revisions from 2025-01-09); found model_type "
            f"{raw.get('model_type')!r}, architectures {raw.get('architectures')}")
    try:
        return MoondreamConfig.from_dict(raw.get("config") or {})
    except (TypeError, ValueError) as e:
        raise UnknownModelError(f"{Path(path) / 'config.json'}: {e}") from None


def load(path: Path, *, device: str, dtype) -> Moondream:
    import torch

    config = read_config(path)
    try:
        with torch.device("meta"):
            model = Moondream(config)
    except ValueError as e:
        raise UnknownModelError(f"{path}: {e}") from None
    return load_official(model, path, TABLE, device=device, dtype=dtype)

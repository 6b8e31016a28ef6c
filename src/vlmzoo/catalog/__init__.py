"""The model catalog: cards as data, looked up by id, alias, checkpoint name or hub id."""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from vlmzoo.catalog.schema import Card, Checkpoint
from vlmzoo.errors import UnknownModelError

__all__ = ["Card", "Checkpoint", "Entry", "cards", "get", "find", "list_models", "parse_params"]


@dataclass(frozen=True)
class Entry:
    """A catalog hit: the card and which of its checkpoints the name picked."""

    card: Card
    checkpoint: Checkpoint


@lru_cache(maxsize=1)
def cards() -> tuple[Card, ...]:
    """All cards: vlmzoo's own, then those of plugin families, each set sorted by file name. Validated on load:
    a bad card is a bug, so it raises, naming the file."""
    from vlmzoo.families import families

    folders = [resources.files("vlmzoo.catalog").joinpath("cards")]
    for family in families().values():
        if family.cards:
            package, _, sub = family.cards.partition("/")
            folders.append(resources.files(package).joinpath(sub) if sub else resources.files(package))
    out = []
    for folder in folders:
        for f in sorted(folder.iterdir(), key=lambda p: p.name):
            if f.name.endswith(".toml"):
                try:
                    out.append(Card.model_validate(tomllib.loads(f.read_text(encoding="utf-8"))))
                except Exception as e:
                    raise ValueError(f"catalog card {f} is invalid: {e}") from e
    ids = [c.id for c in out]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"catalog card id(s) {twice} are defined twice (a plugin repeats a card?)")
    return tuple(out)


@lru_cache(maxsize=1)
def _index() -> dict[str, Entry]:
    """Lower-cased name -> entry. Card id and aliases pick the first checkpoint."""
    index: dict[str, Entry] = {}

    def add(key: str, entry: Entry):
        key = key.lower()
        if key in index:
            if index[key].card.id != entry.card.id:
                raise ValueError(f"catalog name {key!r} is claimed by {index[key].card.id} and {entry.card.id}")
            return  # a checkpoint's own name or hub id wins over a card alias
        index[key] = entry

    for card in cards():
        for ck in card.checkpoints:
            entry = Entry(card, ck)
            add(ck.name, entry)
            if ck.hub_id:
                add(ck.hub_id, entry)
        for name in (card.id, *card.aliases):
            add(name, Entry(card, card.checkpoints[0]))
    return index


def find(name: str) -> Entry | None:
    return _index().get(name.lower())


def get(name: str) -> Entry:
    """The entry for ``name``, or UnknownModelError suggesting the nearest names."""
    entry = find(name)
    if entry is None:
        raise UnknownModelError(f"unknown model {name!r}." + suggestion(name))
    return entry


def suggestion(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), list(_index()), n=3, cutoff=0.5)
    if close:
        return " Did you mean: " + ", ".join(close) + "?"
    return " Run `vlmzoo models` to list the catalog."


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmbt]?)\s*$", re.I)


def parse_params(text: str) -> float:
    """'3B' -> 3.0, '500M' -> 0.5, '0.2' -> 0.2 (billions)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"cannot read a parameter count from {text!r} (try 3B or 500M)")
    scale = {"": 1.0, "k": 1e-6, "m": 1e-3, "b": 1.0, "t": 1e3}[m.group(2).lower()]
    return float(m.group(1)) * scale


def list_models(
    *,
    task: str | None = None,
    kind: str | None = None,
    architecture: str | None = None,
    license: str | None = None,
    max_params_b: float | str | None = None,
    multi_image: bool | None = None,
    any_resolution: bool | None = None,
    language: str | None = None,
    support: str | None = None,
    family: str | None = None,
) -> list[Card]:
    """The catalog's cards matching every given criterion, e.g. ``list_models(task="ask",
    max_params_b="3B", multi_image=True)``. Text criteria are case-insensitive substrings;
    ``max_params_b`` is billions, or a size such as "500M"."""
    if isinstance(max_params_b, str):
        max_params_b = parse_params(max_params_b)

    def has(value: str, wanted: str | None) -> bool:
        return wanted is None or wanted.lower() in value.lower()

    out = []
    for c in cards():
        if task and task not in c.tasks:
            continue
        if not (has(c.kind, kind) and has(c.architecture, architecture)
                and (has(c.license, license) or has(c.license_short, license))):
            continue
        if support and c.support != support:
            continue
        if family and c.family != family:
            continue
        if max_params_b is not None and (c.params_b is None or c.params_b > max_params_b):
            continue
        if multi_image is not None and c.multi_image != multi_image:
            continue
        if any_resolution is not None and c.any_resolution != any_resolution:
            continue
        if language and language.lower() not in {x.lower() for x in c.languages}:
            continue
        out.append(c)
    return out

"""What a model name can be, read in one place. Nothing is downloaded or loaded here.

In this order:

1. An API name: ``<prefix>:<model>`` for an API family's prefix (``openai:gpt-4o``,
   ``gemini:gemini-2.5-flash``), ``openai-compatible:<base-url>#<model>``, or a catalog name of
   an API model (``gpt4o``).
2. A local checkpoint folder.
3. A catalog id, alias, checkpoint name or hub id on a card (``hf-hub:`` may prefix it).
4. Any other Hugging Face hub id, ``org/name`` (or ``hf-hub:org/name``).

Anything else is an UnknownModelError suggesting the nearest catalog names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vlmzoo import catalog, families
from vlmzoo.errors import UnknownModelError
from vlmzoo.urls import public_text, public_url

HUB_PREFIX = "hf-hub:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
COMPATIBLE_FORM = ("openai-compatible:<base-url>#<model>, e.g. "
                   "openai-compatible:http://localhost:8000/v1#Qwen/Qwen2-VL-2B-Instruct")


@dataclass(frozen=True)
class ApiName:
    given: str  # the name as written
    provider: str  # the name's prefix: "openai", "gemini", "openai-compatible"
    model: str  # the provider's model id
    base_url: str | None  # given in the name (openai-compatible), else the provider's default
    family: str
    entry: catalog.Entry | None  # the catalog's card for it, if any

    @property
    def name(self) -> str:
        """What the model is called in results: the catalog's spelling when it has a card, else
        the name as written without the credentials its base URL may hold (``public_name``)."""
        return self.entry.checkpoint.name if self.entry else public_name(self.given)

    def __repr__(self) -> str:  # the name as written may hold credentials: never shown
        return f"ApiName({self.name!r}, provider={self.provider!r}, model={self.model!r}, family={self.family!r})"


def public_name(name: str) -> str:
    """A model name as vlmzoo stores and shows it: an ``openai-compatible:<base-url>#<model>``
    name with its base URL made public (no ``user:password@``, no ``?api_key=`` and the like;
    see ``urls.public_url``). Any other name comes back as given."""
    prefix, sep, rest = name.partition(":")
    base_url, hash_, model = rest.rpartition("#")
    if prefix == "openai-compatible" and hash_:
        return f"{prefix}{sep}{public_url(base_url)}{hash_}{model}"
    return public_text(name)


@dataclass(frozen=True)
class FolderName:
    path: Path


@dataclass(frozen=True)
class CatalogName:
    entry: catalog.Entry


@dataclass(frozen=True)
class HubName:
    hub_id: str


ModelName = ApiName | FolderName | CatalogName | HubName


def read_name(name: str | os.PathLike) -> ModelName:
    """What ``name`` is (see the module docstring for the order)."""
    if not isinstance(name, (str, os.PathLike)):
        raise UnknownModelError(f"model name must be a string or path, got {type(name).__name__}")
    text = os.fspath(name)
    if not text.strip():
        raise UnknownModelError("model name is empty")
    folder = Path(text).expanduser()
    api = _api_name(text, is_folder=folder.is_dir())
    if api is not None:
        return api
    if folder.is_dir():
        if not (folder / "config.json").is_file() and families.for_weight_files(folder) is None:
            raise UnknownModelError(f"{text}: folder is not a checkpoint (no config.json)")
        return FolderName(folder)
    bare = text.removeprefix(HUB_PREFIX)
    entry = catalog.find(bare)
    if entry is not None:
        return CatalogName(entry)
    if _HUB_ID.match(bare):
        return HubName(bare)
    raise UnknownModelError(f"unknown model {public_name(text)!r}: not a folder, catalog name or hub id."
                            + catalog.suggestion(text))


def parse_api_name(name: str) -> tuple[str, str, str | None] | None:
    """(prefix, model id, base URL or None) for an API name, None for any other name.

    Raises UnknownModelError for an API prefix with no model, and for an ``openai-compatible:``
    name that is not ``openai-compatible:<http(s) base-url>#<model>``.
    """
    prefix, sep, rest = name.partition(":")
    if not sep or families.for_api_prefix(prefix) is None:
        return None
    if prefix != "openai-compatible":
        if not rest.strip():
            raise UnknownModelError(f"{name!r} names no model; write {prefix}:<model-id>")
        return prefix, rest.strip(), None
    base_url, hash_, model = rest.rpartition("#")
    parts = urlsplit(base_url)
    if not hash_ or not model.strip() or parts.scheme not in ("http", "https") or not parts.netloc:
        raise UnknownModelError(f"cannot read {public_name(name)!r}: expected {COMPATIBLE_FORM}")
    return prefix, model.strip(), base_url.rstrip("/")


def _api_name(text: str, is_folder: bool) -> ApiName | None:
    parsed = parse_api_name(text)
    entry = catalog.find(text)
    if parsed is None:
        if entry is None or entry.card.access != "api" or is_folder:
            return None
        parsed = parse_api_name(entry.checkpoint.name)  # an alias such as "gpt4o"
    elif entry is not None:
        parsed = parse_api_name(entry.checkpoint.name)  # the catalog's spelling of the model id
    prefix, model, base_url = parsed
    return ApiName(text, prefix, model, base_url, families.for_api_prefix(prefix).name, entry)

"""What every data loader shares: the resolved data source, the error type, file readers that
report line numbers, and the cache that turns embedded image bytes into files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vlmzoo.cache_dir import cache_dir
from vlmzoo.errors import VlmzooError


class DataError(VlmzooError, ValueError):
    """A benchmark's data could not be read: the message names the file and what is wrong."""


@dataclass(frozen=True)
class DataSource:
    """A benchmark's ``[data]`` table with every path resolved (see ``spec.DataSpec``)."""

    benchmark: str
    format: str
    path: Path
    images: Path | None = None  # the input files' root; None: the format's default (next to ``path``)
    annotations: Path | None = None
    split: str | None = None
    columns: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    class_names: Path | None = None
    allow_pickle: bool = False
    modality: str = "image"  # what the input files are (image, audio, depth, thermal, imu)
    fold: int | None = None  # esc50: the one fold to read

    @property
    def folder(self) -> Path:
        """The folder the data file is in: where relative secondary paths and defaults live."""
        return self.path.parent

    def images_root(self, default: str | None = None) -> Path:
        if self.images is not None:
            return self.images
        return self.folder / default if default else self.folder


def first(items, n: int = 5) -> str:
    """Up to ``n`` items for an error message, with a count of the rest."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a folder")
    return path


def read_json(path: Path, what: str = "JSON file"):
    require_file(path, what)
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line."""
    require_file(path, "manifest")
    with path.open("r", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {number}: not valid JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path} line {number}: expected a JSON object, got {type(obj).__name__}")
            yield number, obj


def read_csv(path: Path, what: str = "manifest") -> Iterator[tuple[int, dict]]:
    """(line number, row) per data row; a row with more cells than the header is an error."""
    require_file(path, what)
    with path.open("r", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise DataError(f"{path}: empty CSV file (no header row)")
        try:
            for row in reader:
                if None in row:  # DictReader files surplus cells under None
                    raise DataError(f"{path} line {reader.line_num}: {len(reader.fieldnames) + len(row[None])} cells "
                                    f"but the header has {len(reader.fieldnames)}")
                if all(v in (None, "") for v in row.values()):
                    continue
                yield reader.line_num, row
        except csv.Error as e:
            raise DataError(f"{path} line {reader.line_num}: malformed CSV ({e})") from None


def require_columns(path: Path, header, needed: Mapping[str, str], hint: str = "") -> None:
    """Stop at the first column of ``needed`` (column -> what it holds) the header lacks, naming the
    file, the column and the columns the file does have."""
    for column, purpose in needed.items():
        if column not in header:
            raise DataError(f"{path}: no column {column!r} ({purpose}); the file's columns are "
                            f"{', '.join(map(repr, header))}{hint}")


# --- embedded images -------------------------------------------------------------------------

def image_cache_dir() -> Path:
    """Where embedded image bytes become files: $XDG_CACHE_HOME/vlmzoo/eval-images (else
    ~/.cache/...), or a temp folder when that cannot be written."""
    folder = cache_dir("eval-images")
    if folder is None:
        raise DataError("no writable cache folder for embedded images (tried $XDG_CACHE_HOME and the temp folder)")
    return folder


_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


def materialise(data: bytes, where: str) -> Path:
    """Write image bytes to the cache under a name made from their hash (the same bytes always
    give the same file) and return the path. Bytes PIL cannot identify are an error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            fmt = img.format or ""
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{where}: embedded bytes are not an image PIL can read ({e})") from None
    name = hashlib.sha256(data).hexdigest()[:40] + _SUFFIX.get(fmt, "." + fmt.lower() if fmt else ".img")
    target = image_cache_dir() / name
    if not target.is_file():
        # write then rename, so a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    return target

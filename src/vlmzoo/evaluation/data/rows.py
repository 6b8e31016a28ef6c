"""One table row -> one Sample: the field mapping shared by manifests, parquet and saved
Hugging Face datasets.

Fields read: id, image (one path, a list, or ";"-separated paths; in tables also image bytes),
question, answers, options, label, box [x0, y0, x1, y1], category. ``columns`` in the data spec
renames them ({answers = "captions"}); mapping a field to "" leaves it unread; answers and
options may gather several columns ({answers = ["caption_1", "caption_2"]}, empty cells
skipped). Other scalar columns go to ``Sample.meta``.

The ``image`` field holds the sample's input file whatever its modality; without an ``image``
column it is read from ``images``, or from a column named after the modality (``audio``,
``depth``, ``thermal``, ``imu``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from vlmzoo.evaluation.data.common import DataError, materialise
from vlmzoo.evaluation.sample import Sample

FIELDS = ("id", "image", "question", "answers", "options", "label", "box", "category")


Column = str | tuple[str, ...]  # one column, or several gathered into one list


def file_columns(modality: str = "image") -> tuple[str, ...]:
    """The columns the ``image`` field is read from when ``columns`` does not map it, in order."""
    return ("image", "images") + ((modality,) if modality != "image" else ())


def column_map(columns: Mapping[str, Column], available: set[str] | None = None,
               modality: str = "image") -> dict[str, Column | None]:
    """Our field -> the column(s) that hold it (None: not read). ``image`` falls back to an
    ``images`` column, then to one named after the modality, when there is no ``image`` column."""
    unknown = set(columns) - set(FIELDS)
    if unknown:
        raise DataError(f"data.columns names unknown field(s) {sorted(unknown)}; fields are {list(FIELDS)}")
    out: dict[str, Column | None] = {f: columns.get(f, f) or None for f in FIELDS}
    if "image" not in columns and available is not None:
        out["image"] = next((c for c in file_columns(modality) if c in available), "image")
    return out


def mapped_columns(cols: Mapping[str, Column | None]) -> set[str]:
    """Every column a mapping reads."""
    return {c for v in cols.values() if v is not None for c in ((v,) if isinstance(v, str) else v)}


def _text_list(value, where: str, name: str, split_on: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        parts = value.split(split_on) if split_on else [value]
        return tuple(p.strip() for p in parts if p.strip())
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, dict) and "answer" in item:  # VQA-style {"answer": ..., ...}
                item = item["answer"]
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                out.append(str(item).strip())
            else:
                raise DataError(f"{where}: {name} holds a {type(item).__name__}, expected text")
        return tuple(out)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (str(value),)
    raise DataError(f"{where}: {name} is a {type(value).__name__}, expected text or a list of texts")


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_box(value, where: str) -> tuple[float, float, float, float] | None:
    """[x0, y0, x1, y1] from a list or a string such as "10,20,30,40" or "[10 20 30 40]"."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        numbers = _NUMBER.findall(value)
    elif isinstance(value, (list, tuple)):
        numbers = list(value)
    else:
        raise DataError(f"{where}: box is a {type(value).__name__}, expected [x0, y0, x1, y1]")
    try:
        box = tuple(float(v) for v in numbers)
    except (TypeError, ValueError):
        raise DataError(f"{where}: box {value!r} is not four numbers") from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise DataError(f"{where}: box {value!r} is not four numbers")
    if box[2] < box[0] or box[3] < box[1]:
        raise DataError(f"{where}: box {value!r} has x1 < x0 or y1 < y0; boxes are [x0, y0, x1, y1] corners")
    return box  # type: ignore[return-value]


def _scalar_text(value, where: str, name: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: {name} is a {type(value).__name__}, expected text")
    return str(value).strip()


def image_paths(value, root: Path, where: str) -> tuple[Path, ...]:
    """Paths for an image cell: a path (";" separates several), a list, or embedded image bytes
    ({"bytes": ..., "path": ...} as Hugging Face stores them, or raw bytes), which are written to
    the cache so samples always hold files."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(root / Path(p.strip()).expanduser() for p in value.split(";") if p.strip())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return (materialise(bytes(value), where),)
    if isinstance(value, dict):
        if value.get("bytes"):
            return (materialise(bytes(value["bytes"]), where),)
        if value.get("path"):
            return image_paths(str(value["path"]), root, where)
        raise DataError(f"{where}: image cell has neither bytes nor a path")
    if isinstance(value, (list, tuple)):
        return tuple(p for item in value for p in image_paths(item, root, where))
    raise DataError(f"{where}: image cell is a {type(value).__name__}, expected a path or image bytes")


def row_to_sample(row: Mapping, cols: Mapping[str, Column | None], *, where: str, default_id: str, images_root: Path,
                  list_separator: str | None = None,
                  label_names: Callable[[object], object] | None = None) -> Sample:
    """``list_separator``: how one text cell holds several answers/options ("|" in CSV)."""

    def get(name: str):
        column = cols[name]
        if isinstance(column, tuple):  # several columns into one list, empty cells left out
            return [v for c in column if (v := row.get(c)) is not None and v != ""]
        return row.get(column) if column is not None else None

    sample_id = _scalar_text(get("id"), where, "id") or default_id
    label = get("label")
    if label_names is not None and label is not None:
        label = label_names(label)
    # mapped columns are in the sample; a field switched off ("") stays out of meta too
    used = mapped_columns(cols) | {f for f, c in cols.items() if c is None}
    meta = {k: v for k, v in row.items()
            if k not in used and (v is None or isinstance(v, (str, int, float, bool)))}
    return Sample(
        id=sample_id,
        images=image_paths(get("image"), images_root, where),
        question=_scalar_text(get("question"), where, "question"),
        answers=_text_list(get("answers"), where, "answers", list_separator),
        options=_text_list(get("options"), where, "options", list_separator),
        label=_scalar_text(label, where, "label"),
        box=parse_box(get("box"), where),
        category=_scalar_text(get("category"), where, "category"),
        meta=meta,
    )

"""ESC-50 as published (github.com/karolpiczak/ESC-50): 2,000 five-second clips in 50 classes,
<root>/audio/<fold>-<source clip>-<take>-<target>.wav, and <root>/meta/esc50.csv with the columns
filename, fold, target, category, esc10, src_file, take (one row per clip; fold 1-5, target the
class index 0-49, category its name such as "door_wood_knock", esc10 "True" for the ESC-10
subset).

One sample per row: the clip, labelled with its category as words ("door_wood_knock" -> "door
wood knock": the label goes into a text prompt), id the file name; the other columns go to meta.
``data.path`` is the root, or meta/esc50.csv itself (the clips are then in ../audio);
``data.images`` names another folder of clips. ``data.fold`` keeps one fold: zero-shot protocols
read all five, supervised ones test on a held-out fold.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from vlmzoo.evaluation.data.common import (
    DataError,
    DataSource,
    read_csv,
    require_columns,
    require_file,
)
from vlmzoo.evaluation.sample import Sample

META_FILE = Path("meta") / "esc50.csv"
AUDIO_FOLDER = "audio"
COLUMNS = {"filename": "the clip's file in audio/", "fold": "1-5", "target": "the class index",
           "category": "the class name"}
LAYOUT_HINT = (" (ESC-50's meta/esc50.csv has the columns filename, fold, target, category, esc10, src_file, "
               "take)")


def readable(category: str) -> str:
    """ESC-50's category as words: "door_wood_knock" -> "door wood knock"."""
    return " ".join(category.replace("_", " ").split())


def _files(src: DataSource) -> tuple[Path, Path]:
    """(the metadata CSV, the folder of clips)."""
    if src.path.is_dir():
        table, root = require_file(src.path / META_FILE, "ESC-50 metadata file"), src.path
    else:
        table, root = src.path, src.path.parent.parent
    return table, src.images if src.images is not None else root / AUDIO_FOLDER


def _number(value: str, where: str, column: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {column} {value!r} is not a whole number") from None


def load_esc50(src: DataSource) -> Iterator[Sample]:
    table, audio = _files(src)
    out = []
    folds: set[int] = set()
    category_of: dict[int, str] = {}
    checked = False
    for line, row in read_csv(table, "ESC-50 metadata file"):
        if not checked:
            require_columns(table, list(row), COLUMNS, LAYOUT_HINT)
            checked = True
        where = f"{table} line {line}"
        filename, category = (row["filename"] or "").strip(), (row["category"] or "").strip()
        if not filename or not category:
            raise DataError(f"{where}: no {'filename' if not filename else 'category'}")
        fold, target = _number(row["fold"], where, "fold"), _number(row["target"], where, "target")
        if category_of.setdefault(target, category) != category:
            raise DataError(f"{where}: target {target} is {category!r} here but {category_of[target]!r} "
                            "earlier; each target names one category")
        folds.add(fold)
        if src.fold is not None and fold != src.fold:
            continue
        extra = {k: v for k, v in row.items() if k not in COLUMNS}
        if "esc10" in extra:
            extra["esc10"] = str(extra["esc10"]).strip().lower() == "true"
        out.append(Sample(id=filename, images=(audio / filename,), label=readable(category),
                          meta={"fold": fold, "target": target, "category": category, **extra}))
    if not out and folds:
        raise DataError(f"{table}: no clips in fold {src.fold} (the file has folds "
                        f"{', '.join(map(str, sorted(folds)))})")
    return iter(out)

"""Tabular formats: a manifest (JSONL or CSV) next to a folder of images, local parquet files,
and a Hugging Face dataset saved with ``save_to_disk``. Rows become samples via ``rows``.

A row without an id column gets its position in the data (0, 1, ...) as its id; that id
changes if rows are reordered, so give real ids where you can.

A CSV manifest's header is checked up front: a column ``data.columns`` names, or the column of
input files, that the header lacks is an error naming it. (JSON lines may differ row to row, so
a JSONL manifest is checked per sample instead.) With ``data.modality`` the files a manifest
lists are sounds, depth maps, ... (Clotho's captions CSV: ``modality = "audio"``,
``columns = { id = "file_name", image = "file_name", answers = ["caption_1", ...] }``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from vlmzoo.evaluation.data.common import (
    DataError,
    DataSource,
    first,
    read_csv,
    read_jsonl,
    require_columns,
)
from vlmzoo.evaluation.data.rows import column_map, file_columns, row_to_sample
from vlmzoo.evaluation.sample import Sample

MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")


def _manifest_file(path: Path) -> Path:
    if path.is_dir():
        found = [path / n for n in MANIFEST_NAMES if (path / n).is_file()]
        if len(found) != 1:
            raise DataError(f"{path}: a manifest folder holds exactly one of {', '.join(MANIFEST_NAMES)}"
                            f" (found {len(found)})")
        return found[0]
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise DataError(f"{path}: a manifest is a .jsonl or .csv file")
    return path


def load_manifest(src: DataSource) -> Iterator[Sample]:
    path = _manifest_file(src.path)
    is_csv = path.suffix.lower() == ".csv"
    rows = read_csv(path) if is_csv else read_jsonl(path)
    root = src.images_root()
    cols = None
    for position, (line, row) in enumerate(rows):
        if cols is None:  # the first row tells whether the file says "image" or "images"
            cols = column_map(src.columns, set(row), src.modality)
            if is_csv:
                _check_header(path, list(row), cols, src)
        yield row_to_sample(row, cols, where=f"{path} line {line}", default_id=str(position),
                            images_root=root, list_separator="|" if is_csv else None)


def _check_header(path: Path, header: list[str], cols: dict, src: DataSource) -> None:
    """The columns data.columns names, and the input-file column, are in the CSV's header."""
    kind = "images" if src.modality == "image" else f"{src.modality} files"
    if "image" not in src.columns and cols["image"] not in header:
        raise DataError(f"{path}: no column of {kind}: expected one named "
                        f"{' or '.join(map(repr, file_columns(src.modality)))}, or map yours with data.columns "
                        f"(image = \"<column>\"); the file's columns are {', '.join(map(repr, header))}")
    named = {}
    for field, column in src.columns.items():
        for c in (column,) if isinstance(column, str) else column:
            if c:
                named.setdefault(c, f"data.columns maps {field} to it")
    require_columns(path, header, named)


def _arrow_rows(batches: Iterable, where: str, src: DataSource, label_names=None) -> Iterator[Sample]:
    root = src.images_root()
    cols = None
    position = 0
    for batch in batches:
        if cols is None:
            cols = column_map(src.columns, set(batch.schema.names))
        for row in batch.to_pylist():
            yield row_to_sample(row, cols, where=f"{where} row {position}", default_id=str(position),
                                images_root=root, label_names=label_names)
            position += 1


def _parquet_files(src: DataSource) -> list[Path]:
    if src.path.is_file():
        return [src.path]
    files = sorted(src.path.rglob("*.parquet"))
    if not files:
        raise DataError(f"{src.path}: no .parquet files in this folder")
    if src.split:
        # Hugging Face layouts: data/<split>-00000-of-00001.parquet or <config>/<split>/0000.parquet
        chosen = [f for f in files if f.name.startswith(src.split + "-") or src.split in f.relative_to(src.path).parts[:-1]]
        if not chosen:
            raise DataError(f"{src.path}: no parquet file belongs to split {src.split!r} "
                            f"(files: {first(f.relative_to(src.path) for f in files)})")
        files = chosen
    return files


def load_parquet(src: DataSource) -> Iterator[Sample]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("the parquet format needs pyarrow: pip install 'vlmzoo[eval]'") from None
    files = _parquet_files(src)

    def batches():
        for f in files:
            try:
                yield from pq.ParquetFile(f).iter_batches(batch_size=256)
            except Exception as e:  # noqa: BLE001 -- pyarrow raises ArrowInvalid, OSError, ... for a bad file
                raise DataError(f"{f}: cannot read as parquet ({e})") from None

    where = str(files[0]) if len(files) == 1 else f"{src.path} (parquet)"
    yield from _arrow_rows(batches(), where, src)


def load_hf_disk(src: DataSource) -> Iterator[Sample]:
    try:
        import datasets
    except ImportError:
        raise DataError("the hf_disk format needs the datasets package: pip install 'vlmzoo[eval]'") from None
    try:
        ds = datasets.load_from_disk(str(src.path))
    except FileNotFoundError as e:
        raise DataError(f"{src.path}: not a dataset saved with save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if src.split is None and len(splits) == 1:
            ds = ds[splits[0]]
        elif src.split in ds:
            ds = ds[src.split]
        else:
            raise DataError(f"{src.path}: choose a split with data.split (this dataset has {', '.join(splits)})"
                            if src.split is None else f"{src.path}: no split {src.split!r} (it has {', '.join(splits)})")
    label_names = None
    label_column = src.columns.get("label", "label")
    feature = ds.features.get(label_column) if label_column else None
    if isinstance(feature, datasets.ClassLabel):
        def label_names(value):  # integer class ids -> the dataset's own class names; -1 is "no label"
            if isinstance(value, int):
                return None if value < 0 else feature.int2str(value)
            return value
    # arrow format: image columns come back as {"bytes", "path"} dicts instead of decoded PIL images
    yield from _arrow_rows(ds.with_format("arrow").iter(batch_size=256), str(src.path), src, label_names)

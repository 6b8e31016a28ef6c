"""Benchmark data: one loader per file layout, each turning a dataset as published into Samples.

Formats and their modules (in this package):
  manifest, parquet, hf_disk      tables (rows mapped to fields by rows)
  coco_karpathy, flickr30k        captions
  vqav2, textvqa                  vqa
  imagefolder, audiofolder        imagefolder (class folders)
  refcoco                         refcoco
  esc50                           esc50

Whatever the format, ``load_samples`` checks what it yields before anyone scores it: every
sample has an input file, ids are unique, every input file exists. It also marks each sample
with the data's modality (``data.modality``: image, audio, depth, thermal, imu), so loaders
only name files. Loaders never fill in what a file lacks; they stop with an error that names
the file and the problem.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import islice

from vlmzoo.evaluation.data.common import DataError, DataSource, first
from vlmzoo.evaluation.sample import Sample

__all__ = ["FORMATS", "DataError", "DataSource", "load_samples"]


def _loader(module: str, name: str) -> Callable[[DataSource], Iterator[Sample]]:
    def load(src: DataSource) -> Iterator[Sample]:
        # imported on use: the parquet and hf_disk readers pull in optional packages
        from importlib import import_module

        return getattr(import_module(f"vlmzoo.evaluation.{module}"), name)(src)

    return load


LOADERS: dict[str, Callable[[DataSource], Iterator[Sample]]] = {
    "manifest": _loader("data.tables", "load_manifest"),
    "hf_disk": _loader("data.tables", "load_hf_disk"),
    "parquet": _loader("data.tables", "load_parquet"),
    "coco_karpathy": _loader("data.captions", "load_coco_karpathy"),
    "flickr30k": _loader("data.captions", "load_flickr30k"),
    "vqav2": _loader("data.vqa", "load_vqav2"),
    "textvqa": _loader("data.vqa", "load_textvqa"),
    "imagefolder": _loader("data.imagefolder", "load_class_folders"),
    "refcoco": _loader("data.refcoco", "load_refcoco"),
    "audiofolder": _loader("data.imagefolder", "load_class_folders"),
    "esc50": _loader("data.esc50", "load_esc50"),
}
FORMATS: tuple[str, ...] = tuple(LOADERS)


def load_samples(src: DataSource, limit: int | None = None) -> list[Sample]:
    """The first ``limit`` samples (all when None), checked. Duplicate ids are looked for among
    the samples returned, so a limited run does not read the whole of a large table."""
    if src.format not in LOADERS:
        raise DataError(f"benchmark {src.benchmark!r}: unknown data format {src.format!r}; known: {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    samples = list(islice(LOADERS[src.format](src), limit))
    where = f"benchmark {src.benchmark!r} ({src.format} data at {src.path})"
    if not samples:
        raise DataError(f"{where}: no samples")

    kind = "image" if src.modality == "image" else f"{src.modality} file"
    fileless = [s.id for s in samples if not s.images]
    if fileless:
        raise DataError(f"{where}: {len(fileless)} sample(s) have no {kind}: {first(fileless)}")
    repeated = [i for i, n in Counter(s.id for s in samples).items() if n > 1]
    if repeated:
        raise DataError(f"{where}: duplicate sample ids {first(repeated)}; ids must be unique")
    missing = sorted({str(p) for s in samples for p in s.images if not p.is_file()})
    if missing:
        raise DataError(f"{where}: {len(missing)} {src.modality} file(s) missing: {first(missing)}")
    if src.modality != "image":
        samples = [dataclasses.replace(s, modality=src.modality) for s in samples]
    return samples

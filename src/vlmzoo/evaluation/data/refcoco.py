"""Referring expressions in the refer toolkit's layout (RefCOCO, RefCOCO+, RefCOCOg).

``path`` is the refs file: refs(unc).p as the toolkit ships it, or a JSON export of the same
list (ref_id, ann_id, image_id, split, category_id, sentences[] with sent_id, sent, raw).
Unpickling runs code, so a pickle is read only when the data spec says ``allow_pickle = true``,
and even then with an unpickler that refuses every class (refs are plain lists, dicts, strings
and numbers). ``refs_pickle_to_json`` converts the pickle once so nobody needs to opt in.

``annotations`` is instances.json (images[] with id, file_name; annotations[] with id and
bbox [x, y, w, h]; categories[]); it defaults to instances.json next to the refs file.
One sample per (ref, sentence): id "<ref_id>-<sent_id>", question = the sentence (the toolkit's
cleaned "sent", else "raw"), box = the annotation's box as (x0, y0, x1, y1), category = the
object's category name. ``split`` keeps refs of that split (val, testA, testB, test, train).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

from vlmzoo.evaluation.data.common import (
    DataError,
    DataSource,
    read_json,
    require_file,
)
from vlmzoo.evaluation.sample import Sample

PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise DataError(f"the refs pickle asks for {module}.{name}; only plain lists, dicts, strings and "
                        "numbers are accepted")


def _unpickle(path: Path):
    for encoding in ("utf-8", "latin1"):  # the toolkit's files were written by Python 2
        try:
            with path.open("rb") as f:
                return _PlainUnpickler(f, encoding=encoding).load()
        except UnicodeDecodeError:
            continue
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 -- a corrupt pickle can fail in many ways
            raise DataError(f"{path}: cannot unpickle ({type(e).__name__}: {e})") from None
    raise DataError(f"{path}: strings in the pickle are neither UTF-8 nor Latin-1")


def read_refs(path: Path, allow_pickle: bool) -> list:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        require_file(path, "refs file")
        if not allow_pickle:
            raise DataError(
                f"{path} is a pickle, and unpickling can run code. Either set allow_pickle = true in the "
                "benchmark's [data] table, or convert it once to JSON with "
                "vlmzoo.evaluation.data.refcoco.refs_pickle_to_json and point data.path at the .json file")
        refs = _unpickle(path)
    else:
        refs = read_json(path, "refs file")
        if isinstance(refs, dict) and "refs" in refs:
            refs = refs["refs"]
    if not isinstance(refs, list):
        raise DataError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def refs_pickle_to_json(pickle_path: str | Path, json_path: str | Path) -> Path:
    """Convert the toolkit's refs pickle to JSON (same fields); you call this, so you opt in."""
    refs = read_refs(Path(pickle_path), allow_pickle=True)
    Path(json_path).write_text(json.dumps(refs), encoding="utf-8")
    return Path(json_path)


def xywh_to_corners(bbox, where: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"{where}: bbox {bbox!r} is not [x, y, w, h]") from None
    if w < 0 or h < 0:
        raise DataError(f"{where}: bbox {bbox!r} has a negative width or height")
    return (x, y, x + w, y + h)


def load_refcoco(src: DataSource) -> Iterator[Sample]:
    refs = read_refs(src.path, src.allow_pickle)
    instances_path = src.annotations or src.folder / "instances.json"
    instances = read_json(instances_path, "instances file (data.annotations)")
    if not isinstance(instances, dict) or not all(isinstance(instances.get(k), list) for k in ("images", "annotations")):
        raise DataError(f"{instances_path}: not a COCO instances file (images[] and annotations[])")
    images = {img["id"]: img for img in instances["images"]}
    boxes = {ann["id"]: ann for ann in instances["annotations"]}
    categories = {c["id"]: c["name"] for c in instances.get("categories", ())}
    root = src.images_root()

    out, splits = [], set()
    for i, ref in enumerate(refs):
        where = f"{src.path} ref {i}"
        if not isinstance(ref, dict) or not {"ref_id", "ann_id", "image_id", "sentences"} <= set(ref):
            raise DataError(f"{where}: needs ref_id, ann_id, image_id and sentences")
        splits.add(str(ref.get("split")))
        if src.split and ref.get("split") != src.split:
            continue
        ann, img = boxes.get(ref["ann_id"]), images.get(ref["image_id"])
        if ann is None:
            raise DataError(f"{where} (ref_id {ref['ref_id']}): annotation {ref['ann_id']} is not in {instances_path}")
        if img is None:
            raise DataError(f"{where} (ref_id {ref['ref_id']}): image {ref['image_id']} is not in {instances_path}")
        box = xywh_to_corners(ann.get("bbox"), f"{instances_path} annotation {ann['id']}")
        category = categories.get(ref.get("category_id", ann.get("category_id")))
        for k, sentence in enumerate(ref["sentences"]):
            text = sentence.get("sent") or sentence.get("raw") if isinstance(sentence, dict) else None
            if not text:
                raise DataError(f"{where} (ref_id {ref['ref_id']}) sentence {k}: no text")
            sent_id = sentence.get("sent_id", k)
            out.append(Sample(
                id=f"{ref['ref_id']}-{sent_id}", images=(root / img["file_name"],), question=text.strip(), box=box,
                category=category or ref.get("split"),
                meta={"ref_id": ref["ref_id"], "ann_id": ref["ann_id"], "image_id": ref["image_id"],
                      "split": ref.get("split"), "raw": sentence.get("raw")},
            ))
    if not out:
        raise DataError(f"{src.path}: no refs in split {src.split!r} (the file has: {', '.join(sorted(splits))})")
    return iter(out)

"""Caption files: Karpathy's split files (dataset_coco.json, dataset_flickr30k.json) and COCO's
own captions_<split>.json. One sample per image, its reference captions in ``answers``.

Karpathy file: images[] with filename, filepath (COCO only: the image folder, e.g. val2014),
split (train/val/test/restval), sentences[].raw, sentids, cocoid (COCO only). The image is
<images>/<filepath>/<filename>. ``split`` picks test, val or train (train includes restval);
no split means every image.

COCO captions file: images[] (id, file_name) + annotations[] (image_id, caption); the file is
one split already, so ``split`` is not applied. The image is <images>/<file_name>.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from vlmzoo.evaluation.data.common import DataError, DataSource, first, read_json
from vlmzoo.evaluation.sample import Sample


def load_coco_karpathy(src: DataSource) -> Iterator[Sample]:
    return _load(src, coco=True)


def load_flickr30k(src: DataSource) -> Iterator[Sample]:
    return _load(src, coco=False)


def _load(src: DataSource, coco: bool) -> Iterator[Sample]:
    doc = read_json(src.path, "caption file")
    if isinstance(doc, dict) and isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list):
        return _coco_captions(doc, src)
    if isinstance(doc, dict) and isinstance(doc.get("images"), list):
        return _karpathy(doc["images"], src, coco)
    raise DataError(f"{src.path}: neither a Karpathy split file (images[] with sentences) nor a COCO captions "
                    "file (images[] and annotations[])")


def _wanted(split: str | None, image_split: str | None) -> bool:
    if split is None:
        return True
    if split == "train":
        return image_split in ("train", "restval")  # Karpathy's restval images are training data
    return image_split == split


def _karpathy(images: list, src: DataSource, coco: bool) -> Iterator[Sample]:
    root = src.images_root()
    seen_splits: set[str] = set()
    out = []
    for i, entry in enumerate(images):
        where = f"{src.path} images[{i}]"
        if not isinstance(entry, dict) or "filename" not in entry:
            raise DataError(f"{where}: no 'filename' (is this a Karpathy split file?)")
        seen_splits.add(str(entry.get("split")))
        if not _wanted(src.split, entry.get("split")):
            continue
        if coco:
            if "cocoid" not in entry:
                raise DataError(f"{where}: no 'cocoid' (for a Flickr30k file use format = \"flickr30k\")")
            sample_id = str(entry["cocoid"])
        else:
            sample_id = Path(entry["filename"]).stem  # Flickr30k's file names are its image ids
        captions = tuple(s["raw"].strip() for s in entry.get("sentences", ()) if isinstance(s, dict) and s.get("raw"))
        if not captions:
            raise DataError(f"{where} ({entry['filename']}): no sentences with a 'raw' caption")
        folder = root / entry["filepath"] if entry.get("filepath") else root
        out.append(Sample(
            id=sample_id, images=(folder / entry["filename"],), answers=captions,
            meta={"filename": entry["filename"], "split": entry.get("split"), "sentids": list(entry.get("sentids", ()))},
        ))
    if not out:
        raise DataError(f"{src.path}: no images in split {src.split!r} (the file has splits: "
                        f"{', '.join(sorted(seen_splits))})")
    return iter(out)


def _coco_captions(doc: dict, src: DataSource) -> Iterator[Sample]:
    root = src.images_root()
    captions: dict[object, list[str]] = {}
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise DataError(f"{src.path} annotations[{i}]: needs image_id and caption")
        captions.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    image_ids = set()
    out, bare = [], []
    for i, img in enumerate(doc["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise DataError(f"{src.path} images[{i}]: needs id and file_name")
        image_ids.add(img["id"])
        if not captions.get(img["id"]):
            bare.append(img["id"])
            continue
        out.append(Sample(id=str(img["id"]), images=(root / img["file_name"],), answers=tuple(captions[img["id"]]),
                          meta={"filename": img["file_name"]}))
    if bare:
        raise DataError(f"{src.path}: {len(bare)} image(s) have no captions: {first(bare)}")
    orphans = [k for k in captions if k not in image_ids]
    if orphans:
        raise DataError(f"{src.path}: captions refer to image ids not in images[]: {first(orphans)}")
    return iter(out)

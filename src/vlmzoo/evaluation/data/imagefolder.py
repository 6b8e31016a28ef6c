"""ImageNet-style class folders: <path>/<class folder>/<image>. label = the folder name, or its
readable name from ``data.class_names``:

- a JSON object folder -> name ({"n01440764": "tench"}), or folder -> [folder, name] as in
  Keras' imagenet_class_index.json ({"0": ["n01440764", "tench"]});
- a JSON list of names, one per class folder in sorted folder order (CLIP's ImageNet names);
- a text file, one "folder name" per line (LOC_synset_mapping.txt: "n01440764 tench, Tinca tinca").

Two folders may not map to the same name: their images would become one class.
If ``split`` names a sub-folder of <path> (train/, val/), the class folders are read there.
The id is "<folder>/<file name>".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from vlmzoo.evaluation.data.common import (
    DataError,
    DataSource,
    first,
    read_json,
    require_dir,
    require_file,
)
from vlmzoo.evaluation.sample import Sample

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_class_names(path: Path, folders: list[str]) -> dict[str, str]:
    """folder -> readable name, for every folder (a folder the file does not name is an error)."""
    if path.suffix.lower() == ".json":
        doc = read_json(path, "class-name file")
        if isinstance(doc, list):
            if len(doc) != len(folders):
                raise DataError(f"{path}: lists {len(doc)} class names but there are {len(folders)} class folders")
            names = dict(zip(folders, (str(n) for n in doc)))
        elif isinstance(doc, dict):
            names = {}
            for key, value in doc.items():
                if isinstance(value, list) and len(value) == 2:  # Keras index: {"0": [wnid, name]}
                    names[str(value[0])] = str(value[1])
                elif isinstance(value, str):
                    names[key] = value
                else:
                    raise DataError(f"{path}: entry {key!r} is neither a name nor a [folder, name] pair")
        else:
            raise DataError(f"{path}: expected a JSON object or list of class names")
    else:
        require_file(path, "class-name file")
        names = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.strip().split(None, 1)
            if len(parts) != 2:
                raise DataError(f"{path} line {number}: expected 'folder name', got {line.strip()!r}")
            names[parts[0]] = parts[1].strip()
    unnamed = [f for f in folders if f not in names]
    if unnamed:
        raise DataError(f"{path}: no name for class folder(s) {first(unnamed)}")
    owners: dict[str, str] = {}
    for folder in folders:
        name = names[folder]
        if name in owners:
            raise DataError(f"{path}: {owners[name]} and {folder} are both named {name!r}; "
                            "labels must be distinct (use a de-duplicated name list, such as CLIP's)")
        owners[name] = folder
    return {f: names[f] for f in folders}


def load_imagefolder(src: DataSource) -> Iterator[Sample]:
    root = require_dir(src.path, "image folder")
    if src.split and (root / src.split).is_dir():
        root = root / src.split
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class folders (expected <root>/<class>/<image>)")
    names = read_class_names(src.class_names, folders) if src.class_names else {f: f for f in folders}
    out = []
    for folder in folders:
        for image in sorted((root / folder).iterdir()):
            if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES:
                out.append(Sample(id=f"{folder}/{image.name}", images=(image,), label=names[folder],
                                  meta={"folder": folder}))
    if not out:
        raise DataError(f"{root}: the class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return iter(out)

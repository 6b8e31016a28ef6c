"""Class folders: <path>/<class folder>/<file>, ImageNet-style. ``imagefolder`` reads images (or,
with ``data.modality``, depth or thermal maps: image files or .npy arrays); ``audiofolder``
reads sound files (.wav, .flac, .ogg, .aiff), as Hugging Face's folder builders of those names
do. Other files in a class folder are skipped. label = the folder name, or its readable name
from ``data.class_names``:

- a JSON object folder -> name ({"n01440764": "tench"}), or folder -> [folder, name] as in
  Keras' imagenet_class_index.json ({"0": ["n01440764", "tench"]});
- a JSON list of names, one per class folder in sorted folder order (CLIP's ImageNet names);
- a text file, one "folder name" per line (LOC_synset_mapping.txt: "n01440764 tench, Tinca tinca").

Two folders may not map to the same name: their files would become one class.
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
from vlmzoo.modalities import AUDIO_SUFFIXES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# the files a class folder of each modality holds (what vlmzoo.modalities' inputs read)
SUFFIXES: dict[str, set[str]] = {
    "image": IMAGE_SUFFIXES,
    "depth": IMAGE_SUFFIXES | {".npy"},
    "thermal": IMAGE_SUFFIXES | {".npy"},
    "audio": set(AUDIO_SUFFIXES),
}


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


def load_class_folders(src: DataSource) -> Iterator[Sample]:
    kind = "image" if src.modality == "image" else f"{src.modality} file"
    suffixes = SUFFIXES[src.modality]
    root = require_dir(src.path, f"{kind} folder")
    if src.split and (root / src.split).is_dir():
        root = root / src.split
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class folders (expected <root>/<class>/<{kind.replace(' ', '-')}>)")
    names = read_class_names(src.class_names, folders) if src.class_names else {f: f for f in folders}
    out = []
    for folder in folders:
        for file in sorted((root / folder).iterdir()):
            if file.is_file() and file.suffix.lower() in suffixes:
                out.append(Sample(id=f"{folder}/{file.name}", images=(file,), label=names[folder],
                                  meta={"folder": folder}))
    if not out:
        raise DataError(f"{root}: the class folders hold no {kind}s ({', '.join(sorted(suffixes))})")
    return iter(out)

"""Sample photos for the demo, taken from scikit-image's wheel (real photos, offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vlmzoo.errors import VlmzooError

# file name -> what is in it (used as the demo's zero-shot labels)
SAMPLES = {
    "astronaut.png": "an astronaut",
    "chelsea.png": "a cat",
    "coffee.png": "a cup of coffee",
    "rocket.jpg": "a rocket",
}


def sample_dir() -> Path:
    spec = importlib.util.find_spec("skimage")  # locate without importing scikit-image
    if spec is None or not spec.submodule_search_locations:
        raise VlmzooError("sample photos need scikit-image: pip install 'vlmzoo[demo]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sample_photos() -> list[Path]:
    root = sample_dir()
    paths = [root / name for name in SAMPLES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise VlmzooError(f"scikit-image at {root} lacks sample photos {missing}")
    return paths

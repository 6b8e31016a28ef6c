"""Where vlmzoo keeps files it makes for itself (decoded eval images, compiled kernels)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir(name: str) -> Path | None:
    """A writable folder $XDG_CACHE_HOME/vlmzoo/<name> (else ~/.cache/vlmzoo/<name>), falling
    back to <temp>/vlmzoo-<name>; None when neither can be written."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for folder in (base / "vlmzoo" / name, Path(tempfile.gettempdir()) / f"vlmzoo-{name}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return None

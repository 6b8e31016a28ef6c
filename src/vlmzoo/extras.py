"""Optional dependencies: import one, or say which vlmzoo extra installs it."""

from __future__ import annotations

import importlib

from vlmzoo.errors import MissingDependencyError


def require(module: str, extra: str, what: str):
    """``module`` imported, or a MissingDependencyError naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingDependencyError(f"{what} needs the {top} package: pip install 'vlmzoo[{extra}]'") from None

"""vlmzoo: the vision-language models people compare, behind one interface.

    >>> import vlmzoo
    >>> m = vlmzoo.load("clip-vit-b-32")
    >>> m.classify("cat.jpg", ["cat", "dog"]).label

Importing vlmzoo does not import torch; loading a model does.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load", "__version__"]


def load(name, **kwargs):
    """Load a model by catalog id, hub id or checkpoint folder. See ``vlmzoo.loading.load``."""
    from vlmzoo.loading import load as _load

    return _load(name, **kwargs)

"""vlmzoo: the vision-language models people compare, behind one interface.

    >>> import vlmzoo
    >>> m = vlmzoo.load("clip-vit-b-32")
    >>> m.classify("cat.jpg", ["cat", "dog"]).label

Importing vlmzoo does not import torch: every name below is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module it lives in
_EXPORTS = {
    "load": "vlmzoo.loading",
    "list_models": "vlmzoo.catalog",
    "Message": "vlmzoo.tasks",
    "ImagePart": "vlmzoo.tasks",
    "Answer": "vlmzoo.tasks",
    "Caption": "vlmzoo.tasks",
    "ClassScores": "vlmzoo.tasks",
    "Embeddings": "vlmzoo.tasks",
    "MatchScores": "vlmzoo.tasks",
    "Retrieval": "vlmzoo.tasks",
    "Hit": "vlmzoo.tasks",
    "Grounding": "vlmzoo.tasks",
    "Box": "vlmzoo.tasks",
    "Point": "vlmzoo.tasks",
    "GeneratedImage": "vlmzoo.tasks",
    "VlmzooError": "vlmzoo.errors",
    "Audio": "vlmzoo.modalities",
    "Depth": "vlmzoo.modalities",
    "Thermal": "vlmzoo.modalities",
    "IMU": "vlmzoo.modalities",
}

__all__ = ["load", "list_models", "Message", "ImagePart", "Answer", "Caption", "ClassScores", "Embeddings",
           "MatchScores", "Retrieval", "Hit", "Grounding", "Box", "Point", "GeneratedImage", "VlmzooError", "Audio",
           "Depth", "Thermal", "IMU", "__version__"]

if TYPE_CHECKING:
    from vlmzoo.catalog import list_models
    from vlmzoo.errors import VlmzooError
    from vlmzoo.loading import load
    from vlmzoo.modalities import IMU, Audio, Depth, Thermal
    from vlmzoo.tasks import (Answer, Box, Caption, ClassScores, Embeddings, GeneratedImage, Grounding, Hit, ImagePart,
                              MatchScores, Message, Point, Retrieval)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlmzoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])

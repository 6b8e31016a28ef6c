"""A pickle that carries code, for the tests showing vlmzoo never runs one (families/pickled.py)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


class Payload:
    """What a malicious checkpoint carries: unpickling it would call os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def with_payload(weights: Path, marker: Path) -> None:
    """``weights`` (a pickled state dict) rewritten with one more entry: a payload that would
    create ``marker`` if it ever ran."""
    state = torch.load(weights, weights_only=True)
    state["payload"] = Payload(marker)
    torch.save(state, weights)

"""Loading transformers checkpoints the house way: safetensors only, no Hub code, eval mode."""

from __future__ import annotations

import json
from pathlib import Path

from vlmzoo.errors import UnknownModelError


def read_config(path: Path) -> dict:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise UnknownModelError(f"{path}: not a checkpoint folder (no config.json)")
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UnknownModelError(f"{cfg}: config.json is not valid JSON ({e})") from None


def load_model(model_cls, path: Path, *, device: str, dtype):
    """``model_cls.from_pretrained`` with safetensors enforced and remote code refused."""
    if not any(Path(path).glob("*.safetensors")):
        raise UnknownModelError(
            f"{path}: no .safetensors weights; vlmzoo does not load pickled (.bin/.pt) weights"
        )
    from transformers.utils import logging as hf_logging

    # transformers' per-tensor progress bar is noise for a load of seconds; vlmzoo shows its own
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = model_cls.from_pretrained(path, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return model.to(device).eval()


def load_processor(path: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path, trust_remote_code=False)

"""Device and dtype choice. CPU defaults to float32: exact parity with transformers."""

from __future__ import annotations

from vlmzoo.errors import InputError

DTYPES = ("float32", "bfloat16", "float16")


def pick_device(device: str | None = None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but torch sees no CUDA device here")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")
    return device


def pick_dtype(dtype: str | None, device: str):
    """float32 on CPU unless asked; float16 on GPUs (bfloat16 where it is native)."""
    import torch

    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)

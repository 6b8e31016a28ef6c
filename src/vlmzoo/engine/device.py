"""Device and dtype choice.

On CPU the default is float32 (exact parity with transformers), except for families whose
embeddings are shown to survive bfloat16 (cosine >= 0.999, tested) on CPUs that compute bf16
natively (AVX512-BF16 or AMX), where it runs several times faster (docs/performance.md). ``dtype="float32"`` restores
exact mode everywhere. A half-precision dtype asked for on a CPU that only emulates it is
honoured, with a warning: there it is slower than float32, not faster.
"""

from __future__ import annotations

import logging

from vlmzoo.errors import InputError

log = logging.getLogger("vlmzoo.engine")

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


def cpu_flags() -> set[str]:
    """This CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is absent)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return set()


def cpu_has_native_bf16() -> bool:
    """True if this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_native_fp16() -> bool:
    """True if this CPU has fp16 arithmetic instructions (AVX512-FP16 or AMX-FP16)."""
    return bool(cpu_flags() & {"avx512_fp16", "amx_fp16"})


def _warn_if_emulated(dtype, device: str) -> None:
    """A half-precision dtype asked for on a CPU that only emulates it: say so, since it is slower,
    not faster (figures for an AVX2-only CPU: docs/performance-history.md)."""
    import torch

    native = {torch.bfloat16: cpu_has_native_bf16, torch.float16: cpu_has_native_fp16}.get(dtype)
    if device == "cpu" and native is not None and cpu_flags() and not native():
        name = str(dtype).removeprefix("torch.")
        log.warning("%s asked for on a CPU without native %s instructions: its matrix products are "
                    "emulated and run many times slower than float32 here; dtype='float32' is faster", name, name)


def pick_dtype(dtype: str | None, device: str, cpu_preference: str = "float32"):
    """``dtype`` if given; else float16/bfloat16 on GPUs, and on CPU the family's preference
    (``bfloat16`` only where the CPU computes it natively), else float32."""
    import torch

    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if cpu_preference == "bfloat16" and device == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if not isinstance(dtype, torch.dtype):
        if dtype not in DTYPES:
            raise InputError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        dtype = getattr(torch, dtype)
    _warn_if_emulated(dtype, device)
    return dtype

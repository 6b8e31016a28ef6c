"""Device and dtype choice.

On CPU the default is float32 (exact parity with transformers), except for families whose
embeddings are shown to survive bfloat16 (cosine >= 0.999, tested) on CPUs that compute bf16
natively (AVX512-BF16 or AMX), where it runs about 3x faster. ``dtype="float32"`` restores
exact mode everywhere.
"""

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
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)

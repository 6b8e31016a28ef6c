"""Will a model fit? An estimate from the card (or the weight files) before anything loads.

Loading a model that does not fit gets the process killed with no message; refusing up front
with the numbers is kinder.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlmzoo.errors import VlmzooError

# Weights plus activations, KV cache and allocator slack for a single request.
OVERHEAD = 1.2
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


class InsufficientMemoryError(VlmzooError, MemoryError):
    pass


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def needed_bytes(params_b: float, dtype_name: str) -> int:
    return int(params_b * 1e9 * BYTES.get(dtype_name, 4) * OVERHEAD)


def params_from_weights(path: Path) -> float | None:
    """Parameter count (billions) read from safetensors headers, without loading tensors."""
    import json
    import struct

    total = 0
    files = list(Path(path).glob("*.safetensors"))
    if not files:
        return None
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                total += count
    return total / 1e9


def check_fits(name: str, params_b: float | None, dtype_name: str, device: str) -> None:
    """Raise InsufficientMemoryError if the model clearly cannot fit in this machine's RAM."""
    if device != "cpu" or params_b is None or os.environ.get("VLMZOO_SKIP_MEMORY_CHECK"):
        return
    avail = available_bytes()
    need = needed_bytes(params_b, dtype_name)
    if avail is not None and need > avail:
        hint = " Try dtype='bfloat16'." if dtype_name == "float32" else ""
        raise InsufficientMemoryError(
            f"{name} needs about {need / 2**30:.1f} GiB in {dtype_name} ({params_b:.2f}B parameters x "
            f"{BYTES.get(dtype_name, 4)} bytes + {OVERHEAD - 1:.0%}); {avail / 2**30:.1f} GiB is available.{hint}"
        )

"""Will a model fit? An estimate from the card (or the weight files) before anything loads.

Loading a model that does not fit gets the process killed with no message; refusing up front
with the numbers is kinder.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlmzoo.errors import UnknownModelError, VlmzooError

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
    """Parameter count (billions) read from safetensors headers, without loading tensors.

    A weights file that is damaged, cut short or unreadable is an UnknownModelError naming it
    (``read_safetensors_header``): it could not load either.
    """
    total = 0
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        return None
    for f in files:
        for name, meta in read_safetensors_header(f).items():
            if name != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                total += count
    return total / 1e9


# safetensors' own limits and element sizes (its format: an 8-byte little-endian header length,
# the JSON header, then the tensors' bytes, which the header's data offsets cover exactly)
MAX_HEADER_BYTES = 100_000_000
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
               "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def read_safetensors_header(file: Path) -> dict:
    """The header of a safetensors file (tensor name -> dtype, shape, data offsets), checked
    against the file's size as safetensors checks it when loading. A file that is not one, is cut
    short, or cannot be read is an UnknownModelError naming it and what to do."""
    import json
    import struct

    def damaged(why: str) -> UnknownModelError:
        return UnknownModelError(f"{file}: {why}: the weights file is damaged or incomplete; "
                                 f"download or copy the checkpoint again")

    try:
        with open(file, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                raise damaged(f"{size} bytes, too short for a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, MAX_HEADER_BYTES):
                raise damaged(f"not a safetensors file, or cut short (its header claims {n} bytes; "
                              f"the file has {size})")
            raw = fh.read(n)
    except OSError as e:
        raise UnknownModelError(f"{file}: cannot read the weights ({_why_unreadable(e)})") from None
    try:
        header = json.loads(raw)
    except ValueError:  # not UTF-8, or not JSON
        raise damaged("its header is not JSON") from None
    if not isinstance(header, dict):
        raise damaged("its header is not a table of tensors")
    buffer = size - 8 - n
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        shape = meta.get("shape") if isinstance(meta, dict) else None
        offsets = meta.get("data_offsets") if isinstance(meta, dict) else None
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            raise damaged(f"its header describes tensor {name!r} wrongly")
        count = 1
        for d in shape:
            count *= d
        width = DTYPE_BYTES.get(meta.get("dtype"))
        if width is not None and count * width != offsets[1] - offsets[0]:
            raise damaged(f"tensor {name!r} has {offsets[1] - offsets[0]} bytes for {count} {meta.get('dtype')} values")
        end = max(end, offsets[1])
    if end != buffer:
        what = "cut short" if end > buffer else "longer than its header says"
        raise damaged(f"{what} (its tensors take {end} bytes after the header; the file holds {buffer})")
    return header


def _why_unreadable(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied: give this user read access to it"
    if isinstance(e, IsADirectoryError):
        return "it is a folder, not a file: put the weights file there"
    if isinstance(e, FileNotFoundError):
        return "it is missing, or a link to a file that is gone: download or copy the checkpoint again"
    return f"{e.strerror or e}: check the disk, or download or copy the checkpoint again"


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

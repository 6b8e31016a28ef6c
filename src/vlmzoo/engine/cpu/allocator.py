"""Keep freed memory for reuse on CPU, instead of handing it back to the OS after every op.

glibc's malloc serves blocks above its mmap threshold (at most 32 MB) with a fresh mmap and
unmaps them on free. A model's forward frees and reallocates activations of the same size op
after op, so each new one is faulted in and zeroed page by page, and a large image tower runs
measurably slower than with the settings below, with the same results bit for bit (figures:
docs/performance.md and its history). torch's CPU allocator
does not cache; the usual advice is to preload jemalloc or tcmalloc, which a library cannot do
after the process has started. Two glibc settings do the same job: big blocks come from the
heap (M_MMAP_MAX = 0) and the heap's free top is kept (M_TRIM_THRESHOLD at its maximum).

The cost is that the process holds on to its peak memory for reuse, as torch's CUDA caching
allocator does. Before a model is loaded, free memory is handed back (``malloc_trim``), so the
fit check sees what the machine really has. Applied once a model is loaded on the CPU; Linux with
glibc only; ``VLMZOO_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import threading

log = logging.getLogger("vlmzoo.engine")

SWITCH = "VLMZOO_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4

_lock = threading.Lock()
_applied = False


@functools.cache
def _glibc():
    """The process's C library if it is glibc (mallopt and malloc_trim with these meanings), else None."""
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols the interpreter already has, libc's among them
        libc.gnu_get_libc_version  # musl and others have no such symbol
        return libc
    except (OSError, AttributeError):
        return None


def _turned_off() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


def keep_freed_memory() -> bool:
    """Make this process reuse freed blocks instead of unmapping them (see the module docstring);
    True if the settings are in effect. A second call changes nothing."""
    global _applied
    with _lock:
        if _applied:
            return True
        if _turned_off():
            return False
        libc = _glibc()
        if libc is None:
            return False
        # mallopt returns 1 on success
        if libc.mallopt(M_MMAP_MAX, 0) != 1 or libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) != 1:
            log.warning("glibc refused the malloc settings; freed memory goes back to the OS as before")
            return False
        _applied = True
        return True


def release_free_memory() -> None:
    """Hand the heap's free memory back to the OS (before a model loads, so that the fit check
    and the new weights see it); does nothing where the settings are not in effect."""
    if _applied:
        libc = _glibc()
        if libc is not None:
            libc.malloc_trim(0)

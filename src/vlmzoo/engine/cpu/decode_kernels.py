"""Decode-step kernels for bf16 on CPUs with AVX512-BF16, compiled on first use from
decode_kernels.cpp: ``gemv_bf16`` (a few activation rows times a weight) and
``decode_layer_bf16`` (one whole Llama-style layer for one new token per row).

A decode step multiplies one activation row (or a few) by every weight matrix of the text
decoder, so it is bound by how fast the weights stream from memory. torch's bf16 ``mv`` and
oneDNN's one-row ``linear`` read well below the machine's bandwidth on these shapes; the
AVX512-BF16 loop here, which prefetches the next rows, gets much closer (figures:
docs/performance-history.md, "Generation"). It accumulates in fp32 and rounds once to
bf16, as ``linear`` does. The layer op exists because a small model's layer is ~55 torch ops
whose dispatch costs as much as its matrix products; its bf16 roundings follow transformers'
layer op by op (figures in docs/performance.md).

They are built with torch's extension builder (a C++ compiler and ninja) into
$XDG_CACHE_HOME/vlmzoo/kernels-<hash> the first time a bf16 model decodes on a CPU with
AVX512-BF16, once per machine and torch version, and checked against a float32 product before
use. Where they cannot be built or run (another CPU, no compiler, ``VLMZOO_NATIVE_KERNELS=0``),
decoding keeps torch's kernels and ``unavailable_reason()`` says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import threading
from pathlib import Path

from vlmzoo.cache_dir import cache_dir
from vlmzoo.engine.device import cpu_flags

log = logging.getLogger("vlmzoo.engine")

SOURCE = Path(__file__).with_name("decode_kernels.cpp")
SWITCH = "VLMZOO_NATIVE_KERNELS"
CFLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512bf16", "-fopenmp"]

_lock = threading.Lock()
_state: dict = {}  # "ops" once built, or "reason" they cannot be


def _blocker() -> str | None:
    """Why the kernel cannot be built here, checked before trying; None if it can be tried."""
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"turned off by {SWITCH}={os.environ[SWITCH]}"
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"built only on x86-64 Linux, not {platform.system()} {platform.machine()}"
    if "avx512_bf16" not in cpu_flags():
        return "this CPU has no AVX512-BF16 instructions"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler on PATH (torch's extension builder needs one, and ninja)"
    if shutil.which("ninja") is None:
        return "ninja is not on PATH (torch's extension builder needs it)"
    return None


def _build():
    import torch
    from torch.utils import cpp_extension

    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + torch.__version__.encode()).hexdigest()[:12]
    folder = cache_dir(f"kernels-{digest}")
    if folder is None:
        raise OSError("no writable cache folder for the compiled kernel")
    log.info("building vlmzoo's bf16 decode kernels in %s (once per machine and torch version)", folder)
    cpp_extension.load(name="vlmzoo_decode_kernels", sources=[str(SOURCE)], extra_cflags=CFLAGS,
                       extra_ldflags=["-fopenmp"], build_directory=str(folder), is_python_module=False)
    ops = torch.ops.vlmzoo_kernels
    _check(ops.gemv_bf16)
    return ops


def _check(op) -> None:
    """One product against float32 before the kernel is trusted (a full block, a partial one,
    a K that is not a multiple of 32, two rows, a bias)."""
    import torch

    g = torch.Generator().manual_seed(0)
    w = torch.randn(11, 70, generator=g).to(torch.bfloat16)
    x = torch.randn(2, 70, generator=g).to(torch.bfloat16)
    b = torch.randn(11, generator=g).to(torch.bfloat16)
    want = x.float() @ w.float().T + b.float()
    got = op(x, w, b).float()
    if got.shape != want.shape or not torch.allclose(got, want, rtol=2e-2, atol=2e-2):
        raise RuntimeError("the compiled kernel disagrees with a float32 product")


def kernels():
    """The compiled ops (``torch.ops.vlmzoo_kernels``), built on first call; None where they
    cannot run here. ``gemv_bf16(x, w, bias)`` = ``x @ w.T + bias`` for bf16 tensors on the CPU
    (w with contiguous rows, bias optional); ``decode_layer_bf16``: see LeanDecoder.step."""
    with _lock:
        if not _state:
            reason = _blocker()
            if reason is None:
                try:
                    _state["ops"] = _build()
                except Exception as e:  # a compiler or loader failure must not stop decoding
                    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    reason = f"building it failed: {first_line[:300]}"
                    log.warning("vlmzoo's bf16 decode kernels are not used (%s); decoding uses torch's "
                                "slower kernels", reason)
            if reason is not None:
                _state["reason"] = reason
        return _state.get("ops")


def unavailable_reason() -> str | None:
    """Why ``kernels()`` gave None (after it was called), else None."""
    return _state.get("reason")

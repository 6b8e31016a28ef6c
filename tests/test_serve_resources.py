"""The cost of one request is bounded: for each route, the worst single request the server's
default limits allow keeps the server's peak memory growth under a documented bound and ends
within a documented time (docs/serving.md, "Limits").

Each case runs in a server process of its own (``python -m vlmzoo serve`` with the tiny
checkpoints), so its peak resident memory (VmHWM) is that request's alone, measured against the
process after one small warm-up request per model.
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
import time

import pytest
import requests
from PIL import Image

from vlmzoo.serve import Limits

PEAK_GROWTH_MIB = 512  # documented in docs/serving.md
SECONDS = 60
DEFAULTS = Limits()


def _png_uri(pixels: int) -> str:
    """A square PNG of about ``pixels`` pixels, a gradient: it compresses well, so the request
    body stays far below its limit while the decoded image is as large as allowed."""
    side = int(pixels ** 0.5)
    img = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _status(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _serve(tiny, tiny_chat):
    proc = subprocess.Popen([sys.executable, "-m", "vlmzoo", "serve", "--model", f"qwen={tiny_chat['qwen2_vl']}",
                             "--model", f"clip={tiny['clip']}", "--port", "0", "--log-level", "warning"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"listening on (http://\S+)/v1", line)
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("vlmzoo serve did not start")


def _cases():
    image = _png_uri(DEFAULTS.max_pixels)
    n_images = DEFAULTS.max_request_pixels // DEFAULTS.max_pixels  # the request budget, in largest images
    parts = [{"type": "image_url", "image_url": {"url": image}}] * n_images
    return {
        "chat: the request's pixel budget in the largest images": (
            "/v1/chat/completions",
            {"model": "qwen", "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "Hi"}]}],
             "max_tokens": 400}),
        "chat: the longest text allowed": (
            "/v1/chat/completions", lambda chars: {"model": "qwen", "max_tokens": 8,
                                                   "messages": [{"role": "user", "content": "w" * chars["qwen"]}]}),
        "embeddings: the most inputs, each the longest text allowed": (
            "/v1/embeddings", lambda chars: {"model": "clip",
                                             "input": ["zebra " * (chars["clip"] // 6)] * DEFAULTS.max_inputs}),
        "embeddings: the request's pixel budget in the largest images": (
            "/v1/embeddings", {"model": "clip", "input": parts}),
        "models": ("/v1/models", None),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_the_worst_request_within_the_limits_is_bounded(case, tiny, tiny_chat):
    import vlmzoo

    chars = {"qwen": vlmzoo.load(tiny_chat["qwen2_vl"]).max_text_chars(), "clip": vlmzoo.load(tiny["clip"]).max_text_chars()}
    path, body = _cases()[case]
    body = body(chars) if callable(body) else body
    proc, url = _serve(tiny, tiny_chat)
    try:
        warm = [("/v1/chat/completions", {"model": "qwen", "messages": [{"role": "user", "content": "hi"}],
                                          "max_tokens": 2}), ("/v1/embeddings", {"model": "clip", "input": "hi"})]
        for p, b in warm:
            assert requests.post(url + p, json=b, timeout=120).status_code == 200
        before = _status(proc.pid, "VmRSS")
        start = time.monotonic()
        r = requests.get(url + path, timeout=SECONDS) if body is None else \
            requests.post(url + path, json=body, timeout=SECONDS)
        seconds = time.monotonic() - start
        growth = _status(proc.pid, "VmHWM") - before
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"{case}: HTTP {r.status_code}, {seconds:.1f} s, peak growth {growth:.0f} MiB")
    assert r.status_code in (200, 400), r.text[:300]  # a refusal is fine; a 5xx or a hang is not
    if "pixel budget" in case:
        assert r.status_code == 200, r.text[:300]  # the images themselves were taken in and used
    assert growth < PEAK_GROWTH_MIB, f"{case}: peak memory grew {growth:.0f} MiB"
    assert seconds < SECONDS

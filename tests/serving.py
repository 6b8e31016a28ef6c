"""Running a vlmzoo serve app on 127.0.0.1 inside a test, and request helpers."""

from __future__ import annotations

import base64
import io
import threading
import time
from contextlib import contextmanager

from PIL import Image


@contextmanager
def running(app):
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port; yields the base URL, stops on exit."""
    import uvicorn

    from vlmzoo.serve import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def data_uri(image: Image.Image | str, fmt: str = "PNG") -> str:
    if not isinstance(image, Image.Image):
        image = Image.open(image)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def image_part(image) -> dict:
    return {"type": "image_url", "image_url": {"url": data_uri(image)}}


def user(*parts) -> list[dict]:
    """One user message: strings are text parts, anything else an image."""
    return [{"role": "user", "content": [p if isinstance(p, dict) else {"type": "text", "text": p}
                                         for p in parts]}]

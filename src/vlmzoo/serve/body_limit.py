"""Refuse request bodies over a size limit with a 413, before any handler parses them.

A declared Content-Length over the limit is refused without reading the body into memory; a
chunked body is kept only up to the limit. The body read here is handed on to the app, so it is
read from the socket once.

Before a 413 goes out, the rest of the refused body is read and dropped, up to ``DRAIN_BYTES``
or ``DRAIN_SECONDS``: a client still sending when the server closes the connection would
otherwise get a reset connection instead of the 413 (the "lingering close" web servers do).
"""

from __future__ import annotations

import asyncio
import json

from vlmzoo.serve.errors import error_body


DRAIN_BYTES = 16 * 2**20
DRAIN_SECONDS = 2.0


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _drain(receive)
            return await self._refuse(send, declared.decode("latin-1"))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await _drain(receive)
                return await self._refuse(send, f"more than {self.max_bytes}")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect as the app expects

        return await self.app(scope, replay, send)

    async def _refuse(self, send, size: str):
        payload = json.dumps(error_body(413, f"request body of {size} bytes is over this server's limit of "
                                             f"{self.max_bytes} bytes", code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


async def _drain(receive) -> None:
    """Read and drop what is left of a refused body, within DRAIN_BYTES and DRAIN_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    dropped = 0
    while dropped < DRAIN_BYTES:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            return
        if message["type"] == "http.disconnect":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return

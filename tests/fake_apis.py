"""Fake OpenAI and Gemini servers on 127.0.0.1 for the API model tests.

Each speaks its service's documented wire format closely enough for the official SDK to talk to
it: OpenAI ``POST /v1/chat/completions`` (JSON, or SSE ``chat.completion.chunk`` events ending in
``data: [DONE]``), Gemini ``POST /{version}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``, and each one's error body. A server records every request
(path, headers, JSON body), counts how many it handles at once, and can be scripted to fail,
stall or answer slowly.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
OPENAI_TYPE = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded",
               500: "server_error", 503: "server_error"}


@dataclass
class Fail:
    """Answer one request with an error; ``{key}`` in the message is replaced by the key received."""

    status: int
    message: str = "something went wrong"
    headers: dict = field(default_factory=dict)
    details: list | None = None  # Gemini's error.details (e.g. a google.rpc.RetryInfo)


@dataclass
class Stall:
    """Wait this long before answering normally (to run into the client's timeout)."""

    seconds: float


@dataclass
class Received:
    path: str
    query: str
    headers: dict
    body: dict

    @property
    def key(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth else self.headers.get("x-goog-api-key")


class FakeAPI:
    """One fake provider. ``script`` holds what the next requests get (Fail, Stall); when it is
    empty a request gets ``reply`` (one fake token per word, cut at the max token field); a
    callable ``reply`` makes the text from the request body."""

    def __init__(self, kind: str, reply="A cat sits on a mat.", prompt_tokens: int = 1000,
                 delay: float = 0.0):
        assert kind in ("openai", "gemini")
        self.kind = kind
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.delay = delay  # seconds every answer takes (to see requests overlap)
        self.script: deque = deque()
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    # -- what one request gets ----------------------------------------------------------------

    def answer(self, handler, path: str, query: str, body: dict) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        seen = Received(path, query, headers, body)
        with self._lock:
            self.received.append(seen)
            action = self.script.popleft() if self.script else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        released = []

        def release():
            """The request stops counting as in flight before the bytes that let the client finish
            are written: counted after them, a client that already sent its next request would
            see one request too many in flight (a race the count must not have)."""
            if not released:
                released.append(True)
                with self._lock:
                    self.in_flight -= 1

        try:
            if isinstance(action, Fail):
                return self._error(handler, action, seen.key or "", release)
            time.sleep(action.seconds if isinstance(action, Stall) else self.delay)
            words, finish = self._words(body)
            if self._streamed(path, body):
                self._stream(handler, body, words, finish, release)
            else:
                self._send_json(handler, 200, self._completion(body, words, finish), release=release)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass
        finally:
            release()

    def _words(self, body: dict) -> tuple[list[str], str]:
        if self.kind == "openai":
            limit = body.get("max_completion_tokens") or body.get("max_tokens") or 10_000
        else:
            limit = (body.get("generationConfig") or {}).get("maxOutputTokens") or 10_000
        words = (self.reply(body) if callable(self.reply) else self.reply).split(" ")
        return (words[:limit], "length") if len(words) > limit else (words, "stop")

    def _streamed(self, path: str, body: dict) -> bool:
        return bool(body.get("stream")) if self.kind == "openai" else path.endswith(":streamGenerateContent")

    def _completion(self, body: dict, words: list[str], finish: str) -> dict:
        text = " ".join(words)
        if self.kind == "openai":
            return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish, "logprobs": None}],
                    "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": len(words),
                              "total_tokens": self.prompt_tokens + len(words)}}
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                "finishReason": "STOP" if finish == "stop" else "MAX_TOKENS", "index": 0}],
                "usageMetadata": {"promptTokenCount": self.prompt_tokens, "candidatesTokenCount": len(words),
                                  "totalTokenCount": self.prompt_tokens + len(words)},
                "modelVersion": "fake"}

    def _stream(self, handler, body: dict, words: list[str], finish: str, release) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        if self.kind == "openai":
            base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": body.get("model")}
            events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "finish_reason": None}]}]
            events += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                       for p in pieces]
            events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**base, "choices": [], "usage": {
                    "prompt_tokens": self.prompt_tokens, "completion_tokens": len(words),
                    "total_tokens": self.prompt_tokens + len(words)}})
            lines = [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
        else:
            events = [{"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}],
                       "usageMetadata": {"promptTokenCount": self.prompt_tokens}} for p in pieces[:-1]]
            last = self._completion(body, words, finish)
            last["candidates"][0]["content"]["parts"] = [{"text": pieces[-1] if pieces else ""}]
            events.append(last)
            lines = [f"data: {json.dumps(e)}\r\n\r\n" for e in events]
        for i, line in enumerate(lines):
            if i == len(lines) - 1:
                release()
            handler.wfile.write(line.encode())
            handler.wfile.flush()
            time.sleep(0.01)

    def _error(self, handler, fail: Fail, key: str, release) -> None:
        message = fail.message.replace("{key}", key)
        if self.kind == "openai":
            body = {"error": {"message": message, "type": OPENAI_TYPE.get(fail.status, "error"), "param": None,
                              "code": None}}
        else:
            body = {"error": {"code": fail.status, "message": message, "status": GEMINI_STATUS.get(fail.status, "UNKNOWN")}}
            if fail.details is not None:
                body["error"]["details"] = fail.details
        self._send_json(handler, fail.status, body, fail.headers, release)

    @staticmethod
    def _send_json(handler, status: int, body: dict, headers: dict | None = None, release=None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        if release is not None:
            release()
        handler.wfile.write(data)


def _handler(api: FakeAPI):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if api.kind == "openai" and url.path != "/v1/chat/completions":
                return api._send_json(self, 404, {"error": {"message": f"no route {url.path}", "type": "not_found"}})
            if api.kind == "gemini" and not (url.path.startswith("/v1beta/models/") or url.path.startswith("/v1/models/")):
                return api._send_json(self, 404, {"error": {"code": 404, "message": f"no route {url.path}", "status": "NOT_FOUND"}})
            api.answer(self, url.path, url.query, body)

        def log_message(self, *args):  # keep test output clean
            pass

    return Handler

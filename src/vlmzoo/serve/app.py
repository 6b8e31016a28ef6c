"""The FastAPI app: OpenAI's /v1/chat/completions, /v1/embeddings and /v1/models, plus /health.

Handlers stay thin: intake.py turns a body into a chat and options (images decoded in a thread,
limits checked), worker.py runs the model, and this module shapes OpenAI's responses.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from vlmzoo.errors import VlmzooError
from vlmzoo.serve import errors
from vlmzoo.serve.body_limit import BodyLimit
from vlmzoo.serve.errors import ServeError
from vlmzoo.serve.intake import Limits, chat_of, options_of, take_image
from vlmzoo.serve.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ErrorBody,
    Health,
    ModelInfo,
    ModelList,
)
from vlmzoo.serve.worker import ModelWorker

_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 413)}


@dataclass
class Served:
    """The models one server answers for, by the id clients send as ``model``."""

    workers: dict[str, ModelWorker]
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    def worker(self, model_id: str, task: str | None = None, verb: str = "") -> ModelWorker:
        """The worker serving ``model_id``: a 404 if none does, a 400 if its model lacks ``task``."""
        worker = self.workers.get(model_id)
        if worker is None:
            raise ServeError(404, f"model {model_id!r} is not served here; served: {', '.join(self.workers)}",
                             param="model", code="model_not_found")
        if task is not None and task not in worker.model.tasks:
            raise ServeError(400, f"model {model_id!r} does not {verb or task}; its tasks are "
                                  f"{', '.join(sorted(worker.model.tasks))}", param="model", code="unsupported_task")
        return worker


def create_app(served: Served) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        yield
        for worker in served.workers.values():  # the model threads end with the server
            worker.close()

    app = FastAPI(title="vlmzoo serve", version=_version(), lifespan=lifespan,
                  description="OpenAI-compatible API for vision-language models loaded with vlmzoo.")
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=served.limits.max_body_bytes)

    def check_key(request: Request) -> None:
        if served.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), served.api_key.encode()):
            raise ServeError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                             code="invalid_api_key")

    auth = [Depends(check_key)]

    @app.get("/health", response_model=Health)
    async def health():
        return Health(models={name: asdict(w.stats) for name, w in served.workers.items()})

    @app.get("/v1/models", response_model=ModelList, dependencies=auth, responses=_ERRORS)
    async def list_models():
        return ModelList(data=[_model_info(name, w, served) for name, w in served.workers.items()])

    @app.get("/v1/models/{model_id:path}", response_model=ModelInfo, dependencies=auth, responses=_ERRORS)
    async def get_model(model_id: str):
        return _model_info(model_id, served.worker(model_id), served)

    @app.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=auth, responses=_ERRORS)
    async def chat_completions(body: ChatCompletionRequest):
        worker = served.worker(body.model, "ask", "chat")
        options = options_of(body, served.limits)
        chat = await run_in_threadpool(chat_of, body, served.limits)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream_response(worker, chat, options, body.model, completion_id, created, include_usage)
        answer = await worker.ask(chat, options)
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": _finish(answer), "logprobs": None}],
            "usage": _usage(answer),
        }

    @app.post("/v1/embeddings", response_model=EmbeddingList, dependencies=auth, responses=_ERRORS)
    async def embeddings(body: EmbeddingRequest):
        worker = served.worker(body.model, "embed")
        model = worker.model
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not inputs:
            raise ServeError(400, "input: empty list", param="input")
        if len(inputs) > served.limits.max_inputs:
            raise ServeError(400, f"input: {len(inputs)} inputs; this server takes at most "
                                  f"{served.limits.max_inputs}", param="input")
        texts = [(i, x) for i, x in enumerate(inputs) if isinstance(x, str)]
        if any(not t for _, t in texts):
            raise ServeError(400, "input: empty string", param="input")
        image_slots = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
        if len(image_slots) > served.limits.max_images:
            raise ServeError(400, f"input: {len(image_slots)} images; this server takes at most "
                                  f"{served.limits.max_images} per request", param="input")
        images = [await run_in_threadpool(take_image, inputs[i].image_url.url, served.limits, f"input.{i}")
                  for i in image_slots]
        vectors, tokens = await worker.run(_embed, model, [t for _, t in texts], images)
        order = [i for i, _ in texts] + image_slots
        rows = np.empty((len(inputs), vectors.shape[1]), dtype=np.float32)
        rows[order] = vectors
        if body.dimensions is not None and body.dimensions != rows.shape[1]:
            raise ServeError(400, f"dimensions: {body.model} gives {rows.shape[1]}-dimensional vectors and cannot "
                                  f"shorten them to {body.dimensions}", param="dimensions")
        data = [{"object": "embedding", "index": i, "embedding": _encode(vec, body.encoding_format)}
                for i, vec in enumerate(rows)]
        return {"object": "list", "data": data, "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return app


# -- helpers ---------------------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vlmzoo")
    except PackageNotFoundError:
        return "0"


def _model_info(name: str, worker: ModelWorker, served: Served) -> ModelInfo:
    return ModelInfo(id=name, created=served.created, tasks=sorted(worker.model.tasks))


def _finish(answer) -> str:
    return "length" if answer.finish_reason == "length" else "stop"


def _usage(answer) -> dict:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.num_tokens,
            "total_tokens": answer.prompt_tokens + answer.num_tokens}


def _embed(model, texts: list[str], images: list) -> tuple[np.ndarray, int]:
    """Text vectors then image vectors (one shared space), and the texts' token count."""
    parts = []
    if texts:
        parts.append(model.embed_texts(texts).vectors)
    if images:
        parts.append(model.embed_images(images).vectors)
    tokenizer = getattr(getattr(model, "processor", None), "tokenizer", None)
    tokens = sum(len(ids) for ids in tokenizer(texts)["input_ids"]) if texts and tokenizer is not None else 0
    return np.concatenate(parts).astype(np.float32), tokens


def _encode(vec: np.ndarray, encoding: str):
    """OpenAI's base64 form is the little-endian float32 bytes of the vector."""
    if encoding == "base64":
        return base64.b64encode(vec.astype("<f4").tobytes()).decode()
    return vec.tolist()


async def _stream_response(worker: ModelWorker, chat, options, model_id, completion_id, created, include_usage):
    """SSE chunks as OpenAI sends them. The first piece is awaited before the 200 goes out, so an
    input error found at the start of generation is still a proper 4xx."""
    pieces = worker.stream(chat, options)
    first = await pieces.__anext__()
    if isinstance(first, BaseException):
        raise first

    def chunk(delta: dict, finish=None, usage=None, choices=True) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices
                else []}
        if include_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    async def events():
        try:
            async for event in sse(first):
                yield event
        finally:  # also when the client went away: stop generating for nobody
            await pieces.aclose()

    async def sse(first):
        yield chunk({"role": "assistant", "content": ""})
        item = first
        while True:
            if isinstance(item, BaseException):
                e = errors.as_serve_error(item) if isinstance(item, VlmzooError) else None
                body = errors.error_body(e.status, e.message, e.param, e.code) if e else \
                    errors.error_body(500, "internal error in vlmzoo serve", code="internal_error")
                yield f"data: {json.dumps(body)}\n\n"
                break
            if isinstance(item, str):
                if item:
                    yield chunk({"content": item})
            else:  # the final Answer
                yield chunk({}, finish=_finish(item))
                if include_usage:
                    yield chunk(None, usage=_usage(item), choices=False)
                break
            item = await pieces.__anext__()
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


"""The FastAPI app: OpenAI's /v1/chat/completions, /v1/embeddings and /v1/models, plus /health.

Routes live in ``routes/`` (one module each) and stay thin: intake.py turns a body into a chat
and options (images decoded in a thread, limits checked), worker.py runs the model, and the
route shapes OpenAI's response. This module puts them together with the error handlers and the
body-size limit.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from vlmzoo.serve import errors
from vlmzoo.serve.body_limit import BodyLimit
from vlmzoo.serve.routes import ROUTERS
from vlmzoo.serve.served import Served


def create_app(served: Served) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        yield
        for worker in served.workers.values():  # the model threads end with the server
            worker.close()

    app = FastAPI(title="vlmzoo serve", version=_version(), lifespan=lifespan,
                  description="OpenAI-compatible API for vision-language models loaded with vlmzoo.")
    app.state.served = served
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=served.limits.max_body_bytes)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vlmzoo")
    except PackageNotFoundError:
        return "0"

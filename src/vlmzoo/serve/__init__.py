"""``vlmzoo serve``: models loaded with vlmzoo behind the OpenAI API.

``build_app`` wraps loaded models in the ASGI app; ``run`` serves it with uvicorn. The modules:
schemas (request and response bodies), intake (bodies to chats, limits), worker (one thread per
model, dynamic batching), body_limit, errors (OpenAI-style 4xx), served (what every route needs),
routes/ (one module per route group), app (puts them together).
"""

from __future__ import annotations

import socket

from vlmzoo.serve.intake import Limits

__all__ = ["Limits", "build_app", "run", "parse_model_arg"]


def parse_model_arg(arg: str) -> tuple[str, str]:
    """``--model`` values: ``NAME`` (served under its own name) or ``ID=NAME`` (served as ID)."""
    served_as, sep, name = arg.partition("=")
    if sep and served_as and name and "/" not in served_as and ":" not in served_as:
        return served_as, name
    return arg, arg


def build_app(models: dict, *, limits: Limits | None = None, api_key: str | None = None, max_batch: int = 8,
              window: float = 0.01):
    """The app serving ``models`` (served id -> loaded model object). Each model object is
    renamed to the id it is served as."""
    from vlmzoo.serve.app import create_app
    from vlmzoo.serve.served import Served
    from vlmzoo.serve.worker import ModelWorker

    workers = {}
    for served_as, model in models.items():
        # errors a client sees name the model as the client does, never the folder it came from
        model.name = served_as
        if "ask" in model.tasks:
            model.batch_size = max(model.batch_size, max_batch)  # the worker's batch is one ask call
        workers[served_as] = ModelWorker(model, max_batch=max_batch, window=window)
    return create_app(Served(workers, limits=limits or Limits(), api_key=api_key))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one), so the real port is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def run(app, sock: socket.socket, *, log_level: str = "info") -> None:
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])

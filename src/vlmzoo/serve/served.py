"""What every route needs: the models one server answers for, its limits, and its API key."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

from fastapi import Request

from vlmzoo.serve.errors import ServeError
from vlmzoo.serve.intake import Limits
from vlmzoo.serve.schemas import ErrorBody
from vlmzoo.serve.worker import ModelWorker

# the error bodies a route may answer with, for the OpenAPI document
ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 413)}


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


def get_served(request: Request) -> Served:
    """The Served of the app handling ``request`` (a route's dependency)."""
    return request.app.state.served


def check_key(request: Request) -> None:
    """Require ``Authorization: Bearer <key>`` when the server has a key (compared in constant time)."""
    key = get_served(request).api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise ServeError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

"""``GET /v1/models``, ``GET /v1/models/{id}`` (OpenAI's) and ``GET /health`` (liveness, no key)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from vlmzoo.serve.schemas import Health, ModelInfo, ModelList
from vlmzoo.serve.served import ERRORS, Served, check_key, get_served
from vlmzoo.serve.worker import ModelWorker

router = APIRouter()
auth = [Depends(check_key)]


@router.get("/health", response_model=Health)
async def health(served: Served = Depends(get_served)):
    return Health(models={name: asdict(w.stats) for name, w in served.workers.items()})


@router.get("/v1/models", response_model=ModelList, dependencies=auth, responses=ERRORS)
async def list_models(served: Served = Depends(get_served)):
    return ModelList(data=[_model_info(name, w, served) for name, w in served.workers.items()])


@router.get("/v1/models/{model_id:path}", response_model=ModelInfo, dependencies=auth, responses=ERRORS)
async def get_model(model_id: str, served: Served = Depends(get_served)):
    return _model_info(model_id, served.worker(model_id), served)


def _model_info(name: str, worker: ModelWorker, served: Served) -> ModelInfo:
    return ModelInfo(id=name, created=served.created, tasks=sorted(worker.model.tasks))

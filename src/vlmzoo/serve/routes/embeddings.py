"""``POST /v1/embeddings``: OpenAI's embeddings, for texts and (a vlmzoo extension) images."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from vlmzoo.serve.errors import ServeError
from vlmzoo.serve.intake import PixelBudget, check_text
from vlmzoo.serve.schemas import EmbeddingList, EmbeddingRequest
from vlmzoo.serve.served import ERRORS, Served, check_key, get_served

router = APIRouter(dependencies=[Depends(check_key)])


@router.post("/v1/embeddings", response_model=EmbeddingList, responses=ERRORS)
async def embeddings(body: EmbeddingRequest, served: Served = Depends(get_served)):
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
    max_chars = model.max_text_chars()
    for i, t in texts:
        check_text(len(t), max_chars, body.model, f"input.{i}" if not isinstance(body.input, str) else "input")
    image_slots = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
    if len(image_slots) > served.limits.max_images:
        raise ServeError(400, f"input: {len(image_slots)} images; this server takes at most "
                              f"{served.limits.max_images} per request", param="input")
    budget = PixelBudget(served.limits)
    images = [await run_in_threadpool(budget.take, inputs[i].image_url.url, f"input.{i}") for i in image_slots]
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


def _embed(model, texts: list[str], images: list) -> tuple[np.ndarray, int]:
    """Text vectors then image vectors (one shared space), and the tokens the texts made."""
    parts, tokens = [], 0
    if texts:
        embedded = model.embed_texts(texts)
        parts.append(embedded.vectors)
        tokens = embedded.tokens or 0
    if images:
        parts.append(model.embed_images(images).vectors)
    return np.concatenate(parts).astype(np.float32), tokens


def _encode(vec: np.ndarray, encoding: str):
    """OpenAI's base64 form is the little-endian float32 bytes of the vector."""
    if encoding == "base64":
        return base64.b64encode(vec.astype("<f4").tobytes()).decode()
    return vec.tolist()

"""``POST /v1/embeddings``: OpenAI's embeddings, for texts and (vlmzoo extensions) images, and for
models embedding more modalities (ImageBind) sounds, depth and thermal maps and IMU series."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from vlmzoo.errors import InputError
from vlmzoo.serve.errors import ServeError
from vlmzoo.serve.intake import PixelBudget, check_text
from vlmzoo.serve.schemas import (
    AudioInput,
    DepthInput,
    EmbeddingList,
    EmbeddingRequest,
    ImageInput,
    IMUInput,
    ThermalInput,
)
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
    kinds = [_kind(x) for x in inputs]
    unknown = sorted({k for k in kinds if k not in model.embed_modalities})
    if unknown:
        raise ServeError(400, f"input: {body.model} embeds {' and '.join(model.embed_modalities)}, not {', '.join(unknown)}",
                         param="input")
    image_slots = [i for i, k in enumerate(kinds) if k == "image"]
    if len(image_slots) > served.limits.max_images:
        raise ServeError(400, f"input: {len(image_slots)} images; this server takes at most "
                              f"{served.limits.max_images} per request", param="input")
    budget = PixelBudget(served.limits)
    images = [await run_in_threadpool(budget.take, inputs[i].image_url.url, f"input.{i}") for i in image_slots]
    groups = {}  # the other modalities: typed inputs by kind, with their slots
    for i, k in enumerate(kinds):
        if k not in ("text", "image"):
            groups.setdefault(k, []).append((i, await run_in_threadpool(_typed, inputs[i], f"input.{i}")))
    vectors, tokens = await worker.run(_embed, model, [t for _, t in texts], images,
                                       {k: [x for _, x in g] for k, g in groups.items()})
    order = [i for i, _ in texts] + image_slots + [i for g in groups.values() for i, _ in g]
    rows = np.empty((len(inputs), vectors.shape[1]), dtype=np.float32)
    rows[order] = vectors
    if body.dimensions is not None and body.dimensions != rows.shape[1]:
        raise ServeError(400, f"dimensions: {body.model} gives {rows.shape[1]}-dimensional vectors and cannot "
                              f"shorten them to {body.dimensions}", param="dimensions")
    data = [{"object": "embedding", "index": i, "embedding": _encode(vec, body.encoding_format)}
            for i, vec in enumerate(rows)]
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _kind(item) -> str:
    if isinstance(item, str):
        return "text"
    return {ImageInput: "image", AudioInput: "audio", DepthInput: "depth", ThermalInput: "thermal",
            IMUInput: "imu"}[type(item)]


def _typed(item, where: str):
    """A request's sound, depth or thermal map or IMU series as a vlmzoo.modalities input, its
    bytes decoded and checked here (a 400 naming where it was in the request)."""
    from vlmzoo.modalities import IMU, Audio, Depth, Thermal

    try:
        if isinstance(item, AudioInput):
            from vlmzoo.families.imagebind.audio import decode_audio

            try:
                data = base64.b64decode(item.input_audio.data, validate=True)
            except ValueError:
                raise ServeError(400, f"{where}: input_audio.data is not base64", param=where) from None
            samples, rate = decode_audio(data, where)
            return Audio(samples, rate=rate, label=where)
        if isinstance(item, IMUInput):
            rows = item.imu.data
            if len({len(r) for r in rows}) > 1:
                raise ServeError(400, f"{where}: imu.data rows differ in length", param=where)
            return IMU(np.array(rows, dtype=np.float32), label=where)
        url = (item.depth_url if isinstance(item, DepthInput) else item.thermal_url).url
        return (Depth if isinstance(item, DepthInput) else Thermal)(_data_uri_bytes(url, where), label=where)
    except InputError as e:
        raise ServeError(400, f"{where}: {e}", param=where) from None


def _data_uri_bytes(url: str, where: str) -> bytes:
    head, sep, payload = url.partition(",")
    if not (url.startswith("data:") and sep and head.endswith(";base64")):
        raise ServeError(400, f"{where}: a depth or thermal map must be a base64 data URI (data:image/png;base64,...)",
                         param=where)
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError:
        raise ServeError(400, f"{where}: the data URI's payload is not base64", param=where) from None


def _embed(model, texts: list[str], images: list, typed: dict[str, list]) -> tuple[np.ndarray, int]:
    """Text vectors, image vectors, then each other modality's (one shared space), and the
    tokens the texts made."""
    parts, tokens = [], 0
    if texts:
        embedded = model.embed_texts(texts)
        parts.append(embedded.vectors)
        tokens = embedded.tokens or 0
    if images:
        parts.append(model.embed_images(images).vectors)
    for items in typed.values():
        parts.append(model.embed(items).vectors)
    return np.concatenate(parts).astype(np.float32), tokens


def _encode(vec: np.ndarray, encoding: str):
    """OpenAI's base64 form is the little-endian float32 bytes of the vector."""
    if encoding == "base64":
        return base64.b64encode(vec.astype("<f4").tobytes()).decode()
    return vec.tolist()

"""``POST /v1/images/generations``: OpenAI's image generation, for models that make pictures
(SEED-LLaMA's ``imagine``). One PNG per request, inline as base64."""

from __future__ import annotations

import base64
import io
import time

from fastapi import APIRouter, Depends

from vlmzoo.serve.errors import ServeError
from vlmzoo.serve.intake import check_text
from vlmzoo.serve.schemas import ImageGenerationRequest, ImagesResponse
from vlmzoo.serve.served import ERRORS, Served, check_key, get_served

router = APIRouter(dependencies=[Depends(check_key)])


@router.post("/v1/images/generations", response_model=ImagesResponse, responses=ERRORS)
async def generations(body: ImageGenerationRequest, served: Served = Depends(get_served)):
    worker = served.worker(body.model, "imagine", "make images")
    if body.response_format != "b64_json":
        raise ServeError(400, "response_format: this server returns images inline; ask for 'b64_json'",
                         param="response_format")
    if body.size not in (None, "auto"):
        raise ServeError(400, f"size: {body.model} makes images of its own size; leave size out or send 'auto'",
                         param="size")
    check_text(len(body.prompt), worker.model.max_text_chars(), body.model, "prompt")
    made = await worker.run(_imagine, worker.model, body.prompt, body.seed)
    return {"created": int(time.time()), "data": [{"b64_json": made}]}


def _imagine(model, prompt: str, seed: int | None) -> str:
    result = model.imagine(prompt, **({"seed": seed} if seed is not None else {}))
    buf = io.BytesIO()
    result.image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()

"""``POST /v1/chat/completions``: OpenAI's chat completions, plain and streamed (server-sent events)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from vlmzoo.errors import VlmzooError
from vlmzoo.serve import errors
from vlmzoo.serve.intake import chat_of, options_of
from vlmzoo.serve.schemas import ChatCompletion, ChatCompletionRequest
from vlmzoo.serve.served import ERRORS, Served, check_key, get_served
from vlmzoo.serve.worker import ModelWorker

router = APIRouter(dependencies=[Depends(check_key)])


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
async def chat_completions(body: ChatCompletionRequest, request: Request, served: Served = Depends(get_served)):
    worker = served.worker(body.model, "ask", "chat")
    options = options_of(body, served.limits)
    chat = await run_in_threadpool(chat_of, body, served.limits, worker.model.max_text_chars())
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _stream_response(worker, chat, options, body.model, completion_id, created, include_usage)
    answer = await _unless_the_client_leaves(request, worker.ask(chat, options))
    if answer is None:
        return Response(status_code=499)  # nobody reads it; the code nginx logs for a client that left
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                     "finish_reason": _finish(answer), "logprobs": None}],
        "usage": _usage(answer),
    }


async def _unless_the_client_leaves(request: Request, work):
    """``await work``, unless the client disconnects first: then ``work`` is cancelled (its
    chat is dropped, or its generation stopped) and the result is None."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


async def _disconnect(request: Request) -> None:
    """Returns when the client has gone (the body is read by now, so the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _finish(answer) -> str:
    return "length" if answer.finish_reason == "length" else "stop"


def _usage(answer) -> dict:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.num_tokens,
            "total_tokens": answer.prompt_tokens + answer.num_tokens}


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


"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status.

Every way a request can be wrong ends here as a 4xx that names what was wrong, so clients (the
openai SDK raises BadRequestError, NotFoundError, ... from these) and people read the same
message. Only a bug in vlmzoo itself gives a 500, and its message says so without internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vlmzoo.errors import ImageError, InputError, TaskNotSupportedError, UnknownModelError, VlmzooError

log = logging.getLogger("vlmzoo.serve")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


class ServeError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error" if status < 500
                                                                 else "server_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def as_serve_error(e: VlmzooError) -> ServeError:
    """A vlmzoo error raised while serving a request, as the 4xx it is."""
    if isinstance(e, UnknownModelError):
        return ServeError(404, str(e), param="model", code="model_not_found")
    if isinstance(e, ImageError):
        return ServeError(400, f"image {e}", code="invalid_image")
    if isinstance(e, TaskNotSupportedError):
        return ServeError(400, str(e), param="model", code="unsupported_task")
    if isinstance(e, InputError):
        return ServeError(400, str(e))
    return ServeError(400, str(e))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON ({first.get('msg', '')})", None
    if tuple(first.get("loc", ())) == ("body",):
        return "request body must be a JSON object (Content-Type: application/json)", None
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return (f"{param}: {msg}" if param else msg) + more, param


def install(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError):
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(VlmzooError)
    async def _vlmzoo_error(request: Request, exc: VlmzooError):
        e = as_serve_error(exc)
        return error_response(e.status, e.message, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(400, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("internal error serving %s %s", request.method, request.url.path)
        return error_response(500, "internal error in vlmzoo serve; the server log has the details",
                              code="internal_error")

"""One place that turns any failure into OpenAI's error shape and the right HTTP status.

``{"error": {"message", "type", "param", "code"}}`` — for deskai's own errors, for request
validation (400, not FastAPI's 422), for unknown routes, and, as a last resort, for bugs (500
with no traceback in the body; the traceback goes to the log). Under ``/api/`` (the Ollama
routes) the body is Ollama's ``{"error": "message"}`` instead, and under ``/v1/messages``
(Anthropic's Messages API) Anthropic's ``{"type": "error", "error": {"type", "message"}}``,
with the same status.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deskai.errors import DeskaiError, OverloadedError

log = logging.getLogger("deskai.server")

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(message: str, error_type: str, *, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(status: int, message: str, *, error_type: str | None = None,
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    kind = error_type or _STATUS_TYPES.get(status, "server_error")
    return JSONResponse(error_body(message, kind, param=param, code=code), status_code=status,
                        headers=headers)


def from_deskai_error(exc: DeskaiError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, OverloadedError) else None
    return error_response(exc.http_status, exc.message, error_type=exc.error_type,
                          param=exc.param, code=exc.code, headers=headers)


OLLAMA_PREFIX = "/api/"
ANTHROPIC_PREFIX = "/v1/messages"

# Anthropic's error types by status (its own API answers 529 for overloaded; deskai keeps 503)
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def is_anthropic_path(path: str) -> bool:
    return path == ANTHROPIC_PREFIX or path.startswith(ANTHROPIC_PREFIX + "/")


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}``, the type read from the status."""
    kind = _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def body_for_path(path: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-shaped error ``body`` in the shape of the API ``path`` belongs to."""
    if path.startswith(OLLAMA_PREFIX):
        return {"error": body["error"]["message"]}
    if is_anthropic_path(path):
        return anthropic_error_body(status, body["error"]["message"])
    return body


def in_route_shape(request: Request, response: JSONResponse) -> JSONResponse:
    """Ollama's clients read ``{"error": "message"}``, Anthropic's ``{"type": "error", ...}``;
    keep the status and headers."""
    path = request.url.path
    if not (path.startswith(OLLAMA_PREFIX) or is_anthropic_path(path)):
        return response
    body = json.loads(bytes(response.body))
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in {"content-length", "content-type"}}
    return JSONResponse(body_for_path(path, response.status_code, body),
                        status_code=response.status_code, headers=headers)


# pydantic names the member of a union it tried inside ``loc`` (``prompt.str``,
# ``format.literal['','json']``, ``stop.function-after[...]``): not a client's parameter
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "bytes"})


def client_param(loc: tuple[Any, ...]) -> str | None:
    """The parameter a client wrote, from pydantic's error location: ``messages[0].content``."""
    param = ""
    for part in loc[1:] if loc[:1] == ("body",) else loc:
        if isinstance(part, int):
            param += f"[{part}]"
            continue
        text = str(part)
        if text in _TYPE_TAGS or any(mark in text for mark in "[-'(,"):
            break
        param += f".{text}" if param else text
    return param or None


def describe_validation_error(exc: RequestValidationError) -> tuple[str, str | None]:
    """The first validation problem as one sentence, and the field it is about."""
    first = exc.errors()[0] if exc.errors() else {}
    param = client_param(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "model_attributes_type" and not param:
        return "the request body must be a JSON object", None
    if first.get("type") == "missing":
        return f"missing required parameter {param!r}", param
    return (f"invalid value for {param!r}: {message}" if param else message), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DeskaiError)
    async def _deskai(request: Request, exc: DeskaiError) -> JSONResponse:
        return in_route_shape(request, from_deskai_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation_error(exc)
        return in_route_shape(request, error_response(400, message, param=param,
                                                      code="invalid_parameter"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return in_route_shape(request, error_response(exc.status_code, message,
                                                      headers=exc.headers))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return in_route_shape(request, error_response(
            500, "internal server error; see the server log", code="internal_error"))

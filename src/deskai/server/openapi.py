"""The OpenAPI document, made to say what the server really answers.

FastAPI documents a 422 for validation errors; deskai answers 400 (as OpenAI does), in OpenAI's
error shape on ``/v1`` and ``/health``/``/metrics`` and in Ollama's ``{"error": "..."}`` on
``/api``. Every operation documents those error statuses, so a schema-driven fuzzer can check
both the statuses and the bodies.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from deskai.server.openai.models import ErrorResponse

ERROR_STATUSES = {
    "400": "Invalid request",
    "401": "Missing or wrong API key",
    "404": "Unknown model or route",
    "413": "Request body too large",
    "500": "Internal error",
    "503": "Busy: retry after the Retry-After header",
    "504": "Request timed out",
}
_STREAMED = {"/v1/completions": "text/event-stream", "/v1/chat/completions": "text/event-stream",
             "/api/generate": "application/x-ndjson", "/api/chat": "application/x-ndjson",
             "/api/pull": "application/x-ndjson"}
_OLLAMA_ERROR = {"type": "object", "properties": {"error": {"type": "string"}},
                 "required": ["error"], "title": "OllamaError"}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version,
                           description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}")
    for name, sub in schemas["ErrorResponse"].pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas["OllamaError"] = _OLLAMA_ERROR
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in document.get("paths", {}).items():
        error_ref = "#/components/schemas/" + (
            "OllamaError" if path.startswith("/api/") else "ErrorResponse")
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path in _STREAMED:  # "stream": true answers with a stream of events instead
                content = responses.setdefault("200", {}).setdefault("content", {})
                content[_STREAMED[path]] = {"schema": {"type": "string"}}
            responses.pop("422", None)
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(status, {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": error_ref}}}})
    return document

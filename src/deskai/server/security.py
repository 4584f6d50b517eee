"""Secure defaults at the HTTP edge: an optional API key, and a cap on request body size.

Both are pure ASGI middlewares, so they refuse a request before any handler (or any JSON
parsing) runs, with OpenAI's error shape.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskai.errors import AuthenticationError
from deskai.server.errors import OLLAMA_PREFIX, error_body

OPEN_PATHS = frozenset({"/health"})
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


async def send_error(scope: Scope, send: Send, status: int, message: str, error_type: str,
                     code: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """OpenAI's error body, or Ollama's ``{"error": "..."}`` under ``/api/``."""
    shaped = ({"error": message} if scope["path"].startswith(OLLAMA_PREFIX)
              else error_body(message, error_type, code=code))
    body = json.dumps(shaped).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """With a key set, every route but /health needs ``Authorization: Bearer <key>``."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self._expected):
            await send_error(scope, send, AuthenticationError.http_status,
                             "missing or wrong API key: send 'Authorization: Bearer <key>'",
                             AuthenticationError.error_type, str(AuthenticationError.code),
                             [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a 413, whether or not they declare it."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0
        too_big = False

        async def counting_receive() -> Message:
            nonlocal received, too_big
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_big = True
                    return {"type": "http.disconnect"}
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_big and not started:
                started = True
                await self._refuse(scope, send)
                return
            if message["type"] == "http.response.start":
                started = True
            if not too_big:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)
        if too_big and not started:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        await send_error(scope, send, 413, f"request body larger than {self.max_bytes} bytes",
                         "invalid_request_error", "request_too_large")

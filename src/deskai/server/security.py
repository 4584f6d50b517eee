"""Secure defaults at the HTTP edge: no cross-site or rebound requests, an optional API key,
and a cap on request body size.

All are pure ASGI middlewares, so they refuse a request before any handler (or any JSON
parsing) runs, with OpenAI's error shape.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskai.errors import AuthenticationError
from deskai.server.errors import body_for_path, error_body

OPEN_PATHS = frozenset({"/", "/health"})
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


async def send_error(scope: Scope, send: Send, status: int, message: str, error_type: str,
                     code: str, headers: list[tuple[bytes, bytes]] | None = None, *,
                     param: str | None = None) -> None:
    """OpenAI's error body, Ollama's ``{"error": "..."}`` under ``/api/``, or Anthropic's
    ``{"type": "error", "error": {...}}`` under ``/v1/messages``."""
    shaped = body_for_path(scope["path"], status,
                           error_body(message, error_type, param=param, code=code))
    body = json.dumps(shaped).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(authority: str) -> str:
    """``example.com:3375`` → ``example.com``; ``[::1]:3375`` → ``::1`` (lower case)."""
    return (urlsplit(f"//{authority}").hostname or "").lower()


def is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class SiteGuardMiddleware:
    """Refuse what a web page the user happens to visit could send to this local server.

    * **Host** (DNS rebinding): a page on ``evil.example`` whose name is re-pointed at
      127.0.0.1 sends ``Host: evil.example``. Bound to a loopback address, only loopback
      names and ``allowed_hosts`` are served (as Ollama does); bound to every interface, any
      name is, unless ``allowed_hosts`` lists them. ``*`` allows every name.
    * **Origin** (cross-site requests): a page may POST a "simple" request (``text/plain``, no
      CORS preflight) and the server reads bodies as JSON whatever their type (so ``curl -d``
      works). Browsers send ``Origin`` with such requests; one that is not this server's own
      (same host and port) nor a ``--cors-origin`` is refused with a 403. Clients that are not
      browsers send no ``Origin`` and are unaffected.
    """

    def __init__(self, app: ASGIApp, *, bind_host: str, allowed_hosts: Iterable[str] = (),
                 allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self._hosts = {host.lower() for host in allowed_hosts}
        self._any_host = "*" in self._hosts or (not self._hosts and not is_loopback(
            host_name(bind_host) or bind_host))
        self._origins = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        authority = headers.get(b"host", b"").decode("latin-1")
        if not self._host_allowed(host_name(authority)):
            await send_error(scope, send, 403, f"host {authority!r} is not allowed; start the "
                             "server with --allowed-hosts to serve it", "permission_error",
                             "host_not_allowed")
            return
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1"), authority):
            await send_error(scope, send, 403, "cross-origin request refused; start the server "
                             "with --cors-origin to allow this origin", "permission_error",
                             "origin_not_allowed")
            return
        await self.app(scope, receive, send)

    def _host_allowed(self, name: str) -> bool:
        return self._any_host or is_loopback(name) or name in self._hosts

    def _origin_allowed(self, origin: str, authority: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self._origins or "*" in self._origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in {"http", "https"} and parts.netloc == authority.lower()


class ApiKeyMiddleware:
    """With a key set, every route but /health needs ``Authorization: Bearer <key>`` (the
    scheme in any case, as RFC 7235 says) or Anthropic-style ``x-api-key: <key>``."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if not hmac.compare_digest(self._given_key(dict(scope["headers"])), self._expected):
            await send_error(scope, send, AuthenticationError.http_status,
                             "missing or wrong API key: send 'Authorization: Bearer <key>'",
                             AuthenticationError.error_type, str(AuthenticationError.code),
                             [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _given_key(headers: dict[bytes, bytes]) -> bytes:
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer":
            return token.strip()
        return headers.get(b"x-api-key", b"")


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

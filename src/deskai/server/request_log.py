"""Request plumbing: bodies read as JSON, and one log line per request (method, path,
status, prompt and generated tokens, duration).

A pure ASGI middleware, so the line is written when the last byte of the body has gone out —
after a stream ends, with its final token counts (which handlers leave on ``request.state``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskai.server.security import send_error

log = logging.getLogger("deskai.server")


class JSONBodyMiddleware:
    """Read every request body as JSON, whatever its content type says, and refuse text that
    is not Unicode.

    ``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``; llama-server and OpenAI
    parse the body as JSON anyway, and so does deskai (cross-site pages are kept out by the
    site guard, not by the content type). JSON may spell a lone UTF-16 surrogate
    (``"\\ud800"``), which no tokenizer, template or file can take: it is a 400 naming where
    it is, before any handler sees it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        # in place, not a copy: outer middlewares read what routing adds to this same scope
        # (the matched route)
        scope["headers"] = [*headers, (b"content-type", b"application/json")]
        body, more = await _read_body(receive)
        if more is None:  # the client left while sending
            return
        where = _lone_surrogate(body)
        if where is not None:
            await send_error(scope, send, 400, f"{where or 'the body'} holds a lone UTF-16 "
                             "surrogate, which is not valid Unicode text",
                             "invalid_request_error", "invalid_parameter", param=where)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive) -> tuple[bytes, bool | None]:
    """The whole body (the size limit is enforced outside), or ``None`` on a disconnect."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then wait for the disconnect, as the server would
    return replay


def _lone_surrogate(body: bytes) -> str | None:
    """Where a JSON body holds a lone surrogate (``""`` for the top level), else None."""
    if b"\\u" not in body:  # only an escape can spell one
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the route's validation says so
    return _find_surrogate(document, "")


def _find_surrogate(document: Any, root: str) -> str | None:
    """Depth-first, with a stack of its own: a body may nest thousands of levels deep."""
    stack: list[tuple[Any, str]] = [(document, root)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _is_unicode(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                here = f"{path}.{key}" if path else str(key)
                if not _is_unicode(key):
                    return here
                stack.append((item, here))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        logged = False

        async def send_and_log(message: Message) -> None:
            nonlocal logged
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                logged = True
                _log_line(scope, status["code"], time.perf_counter() - started)

        try:
            await self.app(scope, receive, send_and_log)
        finally:
            if not logged:  # the client went away mid-stream
                _log_line(scope, status["code"], time.perf_counter() - started, note="aborted")


def _log_line(scope: Scope, status: int, seconds: float, note: str = "") -> None:
    state: dict[str, Any] = scope.get("state", {})
    prompt, completion = state.get("prompt_tokens", 0), state.get("completion_tokens", 0)
    log.info("%s %s %d prompt_tokens=%d completion_tokens=%d %.3fs%s", scope["method"],
             scope["path"], status, prompt, completion, seconds, f" {note}" if note else "")
    metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
    if metrics is not None:
        # the route's template, not the raw path, so that labels stay few
        route = getattr(scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, scope["method"], str(status)).inc()

"""Request plumbing: bodies read as JSON, and one log line per request (method, path,
status, prompt and generated tokens, duration).

A pure ASGI middleware, so the line is written when the last byte of the body has gone out —
after a stream ends, with its final token counts (which handlers leave on ``request.state``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("deskai.server")


class JSONBodyMiddleware:
    """Read every request body as JSON, whatever its content type says.

    ``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``; llama-server and OpenAI
    parse the body as JSON anyway, and so does deskai.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in {"POST", "PUT", "PATCH"}:
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            # in place, not a copy: outer middlewares read what routing adds to this same
            # scope (the matched route)
            scope["headers"] = [*headers, (b"content-type", b"application/json")]
        await self.app(scope, receive, send)


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

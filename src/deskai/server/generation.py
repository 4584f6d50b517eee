"""The one native generation path every API route uses: lease a model, stream its deltas.

The engine produces deltas on its own thread; the event loop's ``LoopMailbox`` carries a
step's worth of them across at once, into each ``DeltaStream``'s asyncio queue. When the client
goes away, the route's generator is closed, its ``finally`` closes the stream, and the engine
frees the slot at its next step.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from deskai.engine.sampling import SamplingParams
from deskai.engine.types import Delta, FinishReason, TokenLogprobs
from deskai.errors import EngineError, RequestTimeoutError
from deskai.runtime.manager import LoadedModel, ModelManager
from deskai.store import Store


@dataclass(slots=True)
class Generation:
    """A whole, non-streamed answer."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache, not computed again
    logprobs: list[TokenLogprobs] = field(default_factory=list)


def manager_of(request: Request) -> ModelManager:
    """The app's model manager (every route reaches the engine through it)."""
    manager: ModelManager = request.app.state.manager
    return manager


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@asynccontextmanager
async def leased_model(manager: ModelManager, name: str,
                       keep_alive: float | None = None) -> AsyncIterator[LoadedModel]:
    """Load (off the event loop) and hold a model for the duration of one request."""
    loaded = await asyncio.to_thread(manager.acquire, name, keep_alive)
    try:
        yield loaded
    finally:
        manager.release(loaded)


class LoopMailbox:
    """Hands deltas from the engine thread to one event loop, waking it once per batch.

    ``loop.call_soon_threadsafe`` per delta writes to the loop's wake-up socket each time, and
    every such syscall lets the event loop take the GIL from the engine thread in the middle of
    its step (16 streams: 16 hand-overs per step while llama.cpp's threads wait). Here the
    first delta of a batch wakes the loop; the rest of the step's deltas join the same batch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[Delta], Delta]] = []

    def post(self, queue: asyncio.Queue[Delta], delta: Delta) -> None:
        with self._lock:
            self._pending.append((queue, delta))
            wake = len(self._pending) == 1
        if wake:
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for queue, delta in pending:
            queue.put_nowait(delta)


_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMailbox] = \
    weakref.WeakKeyDictionary()


def mailbox_of(loop: asyncio.AbstractEventLoop) -> LoopMailbox:
    """The running loop's mailbox (one per loop, made on first use)."""
    mailbox = _mailboxes.get(loop)
    if mailbox is None:
        mailbox = _mailboxes[loop] = LoopMailbox(loop)
    return mailbox


class DeltaStream:
    """One request's deltas as an async iterator; created eagerly so that errors such as an
    over-long prompt surface before any response is sent. ``close`` cancels the request."""

    def __init__(self, loaded: LoadedModel, prompt: str | list[int], params: SamplingParams,
                 *, add_special: bool = True, http_request: Request | None = None) -> None:
        mailbox = mailbox_of(asyncio.get_running_loop())
        self._deltas: asyncio.Queue[Delta] = asyncio.Queue()
        self._http_request = http_request
        self._handle = loaded.submit(prompt, params,
                                     functools.partial(mailbox.post, self._deltas),
                                     add_special=add_special)
        self._done = False
        self._model = loaded.name
        self._metrics = getattr(http_request.app.state, "metrics", None) if http_request else None
        self._last_token_at = time.monotonic()
        self._seen_token = False

    def __aiter__(self) -> DeltaStream:
        return self

    async def __anext__(self) -> Delta:
        if self._done:
            raise StopAsyncIteration
        delta = await self._deltas.get()
        if self._http_request is not None:
            record_usage(self._http_request, delta)
        if self._metrics is not None:
            self._observe(delta)
        if delta.finish_reason is not None:
            self._done = True
        if delta.finish_reason is FinishReason.ERROR:
            raise EngineError(delta.error or "generation failed")
        if delta.finish_reason is FinishReason.TIMEOUT:
            raise RequestTimeoutError(delta.error or "the request timed out")
        return delta

    def close(self) -> None:
        self._handle.cancel()

    def _observe(self, delta: Delta) -> None:
        metrics, model = self._metrics, self._model
        if delta.token_ids:
            now = time.monotonic()
            latency = (metrics.inter_token_latency if self._seen_token
                       else metrics.time_to_first_token)
            latency.labels(model).observe(now - self._last_token_at)
            self._last_token_at, self._seen_token = now, True
        if delta.finish_reason is not None:
            metrics.prompt_tokens.labels(model).inc(delta.prompt_tokens)
            metrics.generated_tokens.labels(model).inc(delta.completion_tokens)


async def generate_text(loaded: LoadedModel, prompt: str | list[int], params: SamplingParams,
                        *, add_special: bool = True,
                        http_request: Request | None = None) -> Generation:
    parts: list[str] = []
    logprobs: list[TokenLogprobs] = []
    last: Delta | None = None
    stream = DeltaStream(loaded, prompt, params, add_special=add_special,
                         http_request=http_request)
    watcher = (asyncio.create_task(_cancel_on_disconnect(http_request, stream))
               if http_request is not None else None)
    try:
        async for delta in stream:
            parts.append(delta.text)
            logprobs.extend(delta.logprobs)
            last = delta
    finally:
        stream.close()
        if watcher is not None:
            watcher.cancel()
    assert last is not None and last.finish_reason is not None
    return Generation("".join(parts), last.finish_reason.value, last.prompt_tokens,
                      last.completion_tokens, cached_tokens=last.cached_tokens,
                      logprobs=logprobs)


async def _cancel_on_disconnect(http_request: Request, stream: DeltaStream,
                               interval: float = 0.1) -> None:
    """Free the slot of a non-streamed request whose client hung up (streamed responses are
    cancelled by Starlette itself when the client goes away)."""
    while not await http_request.is_disconnected():
        await asyncio.sleep(interval)
    stream.close()


class ClosingStreamingResponse(StreamingResponse):
    """A streamed answer whose ``close`` runs exactly once however it ends — its chunks all
    sent, the stream broken, or a client gone before the first chunk (a generator that never
    started never runs its ``finally``). The one place a streamed request gives back its
    generation and its lease, for every API's stream."""

    def __init__(self, content: AsyncIterator[str], close: Callable[[], None], *,
                 media_type: str) -> None:
        self._close: Callable[[], None] | None = close
        super().__init__(self._closing(content), media_type=media_type,
                         headers={"Cache-Control": "no-cache"})

    async def _closing(self, content: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for chunk in content:
                yield chunk
        finally:
            self._close_once()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._close_once()

    def _close_once(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()


def record_usage(http_request: Request, delta: Delta) -> None:
    """Leave token counts where the request log middleware finds them."""
    http_request.state.prompt_tokens = delta.prompt_tokens
    http_request.state.completion_tokens = delta.completion_tokens

"""Streaming responses: deltas of one or more choices → OpenAI's SSE chunks, then ``[DONE]``.

Each choice has a chunker that knows what its deltas mean on the wire: plain text, text with
log-probabilities, or tool calls (held back until they are whole, then sent keyed by
``index``, ending with ``finish_reason: "tool_calls"``). Several choices (``n > 1``) are
generated concurrently and their chunks interleave as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from deskai.engine.types import Delta
from deskai.errors import DeskaiError
from deskai.frontend.tools import ToolPlan, output_mode, parse_tool_calls
from deskai.server.errors import error_body
from deskai.server.generation import ClosingStreamingResponse, DeltaStream
from deskai.server.openai import convert
from deskai.server.openai.logprobs import TokenBytes, to_chat_logprobs, to_completion_logprobs
from deskai.server.openai.models import ToolCallDelta

Choice = dict[str, Any]


@dataclass
class CompletionChunker:
    index: int
    token_bytes: TokenBytes
    logprobs: int | None = None

    def choices(self, delta: Delta) -> list[Choice]:
        finish = delta.finish_reason.value if delta.finish_reason else None
        if not delta.text and finish is None:
            return []
        choice: Choice = {"index": self.index, "text": delta.text, "finish_reason": finish,
                          "logprobs": None}
        if self.logprobs is not None:
            choice["logprobs"] = to_completion_logprobs(
                delta.logprobs, self.token_bytes, with_top=self.logprobs > 0).model_dump()
        return [choice]


@dataclass
class ChatChunker:
    index: int
    token_bytes: TokenBytes
    tools: ToolPlan | None = None
    logprobs: bool = False
    _opened: bool = False
    _held: list[Delta] = field(default_factory=list)
    _mode: str = "undecided"  # with tools: "text" or "calls" once the first character shows

    def choices(self, delta: Delta) -> list[Choice]:
        out: list[Choice] = []
        if not self._opened:
            self._opened = True
            out.append(self._choice({"role": "assistant", "content": ""}))
        if self.tools is None:
            return out + self._text_choices(delta)
        self._held.append(delta)
        if self._mode == "undecided":
            mode = output_mode("".join(d.text for d in self._held), self.tools,
                               finished=delta.finish_reason is not None)
            if mode is None:
                return out
            self._mode = mode
        if self._mode == "text":
            held, self._held = self._held, []
            return out + [choice for past in held for choice in self._text_choices(past)]
        if delta.finish_reason is not None:
            out.extend(self._tool_call_choices())
        return out

    def _text_choices(self, delta: Delta) -> list[Choice]:
        finish = delta.finish_reason.value if delta.finish_reason else None
        if not delta.text and finish is None:
            return []
        choice = self._choice({"content": delta.text} if delta.text else {}, finish)
        if self.logprobs:
            choice["logprobs"] = to_chat_logprobs(delta.logprobs, self.token_bytes).model_dump()
        return [choice]

    def _tool_call_choices(self) -> list[Choice]:
        text = "".join(d.text for d in self._held)
        last = self._held[-1]
        finish = last.finish_reason.value if last.finish_reason else "stop"
        calls = (parse_tool_calls(text, cut_short=finish == "length")
                 if finish in ("stop", "length") else None)
        if calls is None:  # not a whole call after all: send what was said
            return [self._choice({"content": text}), self._choice({}, finish)]
        deltas = [ToolCallDelta(index=i, id=call.id, type="function",
                                function={"name": call.name, "arguments": call.arguments}
                                ).model_dump(exclude_none=True)
                  for i, call in enumerate(calls)]
        # cut by max_tokens: the whole calls go out, and the finish says it was cut
        return [self._choice({"tool_calls": deltas}),
                self._choice({}, "tool_calls" if finish == "stop" else finish)]

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> Choice:
        return {"index": self.index, "delta": delta, "logprobs": None, "finish_reason": finish}


Chunker = CompletionChunker | ChatChunker


def sse_response(streams: list[DeltaStream], chunkers: list[Chunker], *, model: str,
                 chat: bool, include_usage: bool, on_close: Callable[[], None]
                 ) -> StreamingResponse:
    """Stream every choice's chunks as SSE; the generations are cancelled and ``on_close``
    runs when the response ends, however it ends."""
    chunk_id = convert.new_id("chatcmpl" if chat else "cmpl")
    created = convert.now()
    kind = "chat.completion.chunk" if chat else "text_completion"

    def envelope(choices: list[Choice]) -> dict[str, Any]:
        return {"id": chunk_id, "object": kind, "created": created, "model": model,
                "choices": choices}

    async def events() -> AsyncIterator[str]:
        finals: dict[int, Delta] = {}
        try:
            async for index, delta in _merged(streams):
                if delta.finish_reason is not None:
                    finals[index] = delta
                for choice in chunkers[index].choices(delta):
                    yield convert.sse(envelope([choice]))
            if include_usage and finals:
                first = finals[0]
                usage = convert.usage_of(first.prompt_tokens,
                                         sum(d.completion_tokens for d in finals.values()),
                                         first.cached_tokens)
                yield convert.sse({**envelope([]), "usage": usage.model_dump()})
        except DeskaiError as exc:
            yield convert.sse(error_body(exc.message, exc.error_type, param=exc.param,
                                         code=exc.code))
        yield convert.sse("[DONE]")

    def close() -> None:
        for stream in streams:
            stream.close()
        on_close()

    return ClosingStreamingResponse(events(), close, media_type="text/event-stream")


async def _merged(streams: list[DeltaStream]) -> AsyncIterator[tuple[int, Delta]]:
    """Deltas of several streams as they arrive, tagged with their stream's index."""
    if len(streams) == 1:
        async for delta in streams[0]:
            yield 0, delta
        return
    queue: asyncio.Queue[tuple[int, Delta] | BaseException | None] = asyncio.Queue()

    async def pump(index: int, stream: DeltaStream) -> None:
        try:
            async for delta in stream:
                await queue.put((index, delta))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            await queue.put(exc)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()

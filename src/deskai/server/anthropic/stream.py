"""The engine's deltas → Anthropic's message events; one path for both kinds of answer.

A stream sends the events as SSE (``event:`` and ``data:`` lines): ``message_start``, ``ping``,
then per content block ``content_block_start`` / ``content_block_delta`` (``text_delta``, or
for a tool call ``input_json_delta``) / ``content_block_stop``, then ``message_delta`` (the
stop reason and output tokens) and ``message_stop``. A whole answer is the same events folded
into one message, so the two can never disagree.

With tools, output that opens like a call (``frontend.tools.output_mode``: the first character
that is not a space) is held back until it ends, then sent as ``tool_use`` blocks — or as
text, if it was not a whole call after all. Cut by ``max_tokens``, the calls that were whole
before the cut still go out, with ``stop_reason: "max_tokens"``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from deskai.engine.types import Delta, FinishReason
from deskai.errors import DeskaiError, EngineError
from deskai.frontend.tools import ToolCall, ToolPlan, output_mode, parse_tool_calls
from deskai.server.errors import anthropic_error_body
from deskai.server.generation import ClosingStreamingResponse, DeltaStream

log = logging.getLogger("deskai.server")

Event = tuple[str, dict[str, Any]]
TokenBytes = Callable[[int], bytes]


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def new_tool_use_id() -> str:
    return f"toolu_{secrets.token_hex(12)}"


@dataclass
class MessageEvents:
    """One assistant turn: deltas in, events out.

    ``stops`` are the request's stop strings as the engine got them, the caller's
    ``stop_sequences`` (the first ``caller_stops``) before the chat format's own."""

    message_id: str
    model: str
    input_tokens: int
    tools: ToolPlan | None
    token_bytes: TokenBytes
    stops: list[str] = field(default_factory=list)
    caller_stops: int = 0
    _mode: str | None = None  # "text" or "calls"; None while a stream cannot tell yet
    _held: list[str] = field(default_factory=list)
    _text: list[str] = field(default_factory=list)
    _token_ids: list[int] = field(default_factory=list)
    _blocks: int = 0
    _text_open: bool = False

    def __post_init__(self) -> None:
        self._mode = output_mode("", self.tools, finished=False)

    def start(self) -> list[Event]:
        message: dict[str, Any] = {"id": self.message_id, "type": "message", "role": "assistant",
                                   "model": self.model, "content": [], "stop_reason": None,
                                   "stop_sequence": None,
                                   "usage": {"input_tokens": self.input_tokens,
                                             "output_tokens": 0}}
        return [("message_start", {"type": "message_start", "message": message}),
                ("ping", {"type": "ping"})]

    def events(self, delta: Delta) -> list[Event]:
        if delta.finish_reason is FinishReason.CANCELLED:
            raise EngineError("the generation was cancelled: the model was unloaded or the "
                              "server is shutting down")
        self._text.append(delta.text)
        self._token_ids.extend(delta.token_ids)
        finished = delta.finish_reason is not None
        out: list[Event] = []
        if self._mode == "text":
            out += self._text_events(delta.text)
        else:
            self._held.append(delta.text)
            if self._mode is None:
                self._mode = output_mode("".join(self._held), self.tools, finished=finished)
                if self._mode == "text":
                    held, self._held = "".join(self._held), []
                    out += self._text_events(held)
        if finished:
            out += self._finish(delta)
        return out

    def _text_events(self, text: str) -> list[Event]:
        if not text:
            return []
        out: list[Event] = []
        if not self._text_open:
            self._text_open = True
            out.append(("content_block_start", {"type": "content_block_start",
                                                "index": self._blocks,
                                                "content_block": {"type": "text", "text": ""}}))
        out.append(("content_block_delta", {"type": "content_block_delta", "index": self._blocks,
                                            "delta": {"type": "text_delta", "text": text}}))
        return out

    def _close_text(self) -> list[Event]:
        if not self._text_open:
            return []
        self._text_open = False
        self._blocks += 1
        return [("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})]

    def _finish(self, delta: Delta) -> list[Event]:
        cut = delta.finish_reason is FinishReason.LENGTH
        calls: list[ToolCall] | None = None
        out: list[Event] = []
        if self._mode == "calls":
            held, self._held = "".join(self._held), []
            calls = whole_calls(held, cut_short=cut)
            if calls is None:  # not a whole call after all: say what was said
                out += self._text_events(held)
        out += self._close_text()
        for call in calls or []:
            out += self._tool_use_events(call)
        if cut:
            stop_reason, stop_sequence = "max_tokens", None
        elif calls:
            stop_reason, stop_sequence = "tool_use", None
        else:
            stop_sequence = self._caller_stop()
            stop_reason = "end_turn" if stop_sequence is None else "stop_sequence"
        out.append(("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {"output_tokens": delta.completion_tokens}}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _tool_use_events(self, call: ToolCall) -> list[Event]:
        index = self._blocks
        self._blocks += 1
        block = {"type": "tool_use", "id": new_tool_use_id(), "name": call.name, "input": {}}
        return [("content_block_start", {"type": "content_block_start", "index": index,
                                         "content_block": block}),
                ("content_block_delta", {"type": "content_block_delta", "index": index,
                                         "delta": {"type": "input_json_delta",
                                                   "partial_json": call.arguments}}),
                ("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _caller_stop(self) -> str | None:
        at = matched_stop("".join(self._text), self._token_ids, self.token_bytes, self.stops)
        return self.stops[at] if at is not None and at < self.caller_stops else None


def whole_calls(text: str, *, cut_short: bool) -> list[ToolCall] | None:
    """The tool calls in ``text``, or None; Anthropic's ``input`` is an object, so output
    whose arguments are anything else is no call (it goes out as text)."""
    calls = parse_tool_calls(text, cut_short=cut_short)
    if calls is None or not all(isinstance(json.loads(c.arguments), dict) for c in calls):
        return None
    return calls


def matched_stop(text: str, token_ids: list[int], token_bytes: TokenBytes,
                 stops: list[str]) -> int | None:
    """Which of ``stops`` ended the output (its index), or None when none did.

    A delta does not say. But the engine's token ids still hold what its text leaves out: the
    stop string and anything after it in the same token (an end-of-generation token is never
    among them). The engine checks the stops in order at every token, so the first stop the
    left-out tail starts with is the one it matched."""
    if not stops:
        return None
    raw = b"".join(token_bytes(token) for token in token_ids).decode("utf-8", errors="replace")
    if not raw.startswith(text):
        return None
    tail = raw[len(text):]
    return next((index for index, stop in enumerate(stops) if stop and tail.startswith(stop)),
                None)


def folded(events: Iterable[Event]) -> dict[str, Any]:
    """The message the events describe: what a client that reads the stream ends up with."""
    message: dict[str, Any] = {}
    inputs: dict[int, str] = {}
    for name, data in events:
        if name == "message_start":
            message = {**data["message"], "content": [], "usage": dict(data["message"]["usage"])}
        elif name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            index, change = data["index"], data["delta"]
            if change["type"] == "text_delta":
                message["content"][index]["text"] += change["text"]
            else:
                inputs[index] = inputs.get(index, "") + change["partial_json"]
        elif name == "content_block_stop" and data["index"] in inputs:
            message["content"][data["index"]]["input"] = json.loads(inputs.pop(data["index"]))
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"]["output_tokens"] = data["usage"]["output_tokens"]
    return message


def sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_response(turn: MessageEvents, stream: DeltaStream, *,
                 on_close: Callable[[], None]) -> StreamingResponse:
    """The turn's events as SSE. When the stream ends or the client leaves, the generation is
    cancelled and ``on_close`` runs, once."""

    def close() -> None:
        stream.close()
        on_close()

    async def lines() -> AsyncIterator[str]:
        try:
            for name, data in turn.start():
                yield sse(name, data)
            async for delta in stream:
                for name, data in turn.events(delta):
                    yield sse(name, data)
        except DeskaiError as exc:  # after the 200 went out: Anthropic's error event
            yield sse("error", anthropic_error_body(exc.http_status, exc.message))
        except Exception:
            log.exception("the stream of %s failed", turn.message_id)
            yield sse("error", anthropic_error_body(500, "internal server error; see the "
                                                         "server log"))

    return ClosingStreamingResponse(lines(), close, media_type="text/event-stream")

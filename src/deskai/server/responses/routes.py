"""POST /v1/responses, GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items.

A response is one chat turn through the one native path (``generation``): the conversation
(stored turns before ``previous_response_id``, then this request's input items) is shaped by
the frontend like any chat, and its output becomes a ``message`` or ``function_call`` items.
Streaming sends the Responses API's events: ``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``/``.done``, ``response.function_call_arguments.delta``/``.done``,
``response.output_item.done`` and ``response.completed`` (``response.incomplete`` when
``max_output_tokens`` cut it).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from deskai.engine.sampling import SamplingParams
from deskai.errors import DeskaiError
from deskai.frontend.chat import ChatPrompt, shape_chat
from deskai.frontend.chat_template import template_of
from deskai.frontend.tools import ToolCall, ToolPlan, output_mode
from deskai.runtime.manager import LoadedModel
from deskai.server.generation import (
    ClosingStreamingResponse,
    DeltaStream,
    generate_text,
    leased_model,
    manager_of,
    store_of,
)
from deskai.server.responses import convert
from deskai.server.responses.convert import Item, Outcome
from deskai.server.responses.mcp_tools import MAX_SERVER_STEPS, ServerTools, requested
from deskai.server.responses.models import ResponseRequest
from deskai.server.responses.store import ResponseStore, StoredResponse

router = APIRouter()
EVENT_STREAM = "text/event-stream"
OPENAI_DEFAULT_TOP_P = 1.0


def responses_of(request: Request) -> ResponseStore:
    """The app's stored responses, beside its model store (made on first use)."""
    state = request.app.state
    if getattr(state, "responses", None) is None:
        state.responses = ResponseStore(store_of(request).root / "responses")
    responses: ResponseStore = state.responses
    return responses


@dataclass
class Turn:
    """One /v1/responses request on its way: what it answers and where it is stored."""

    body: ResponseRequest
    items: list[Item]
    conversation: list[Item]
    tools: ToolPlan | None = None
    response_id: str = field(default_factory=lambda: convert.new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(self, **state: Any) -> Item:
        return convert.response_object(self.body, self.response_id, self.created_at, **state)

    def finish(self, output: list[Item], outcome: Outcome, store: ResponseStore) -> Item:
        response = self.response(output=output, outcome=outcome)
        if self.body.store:
            store.save(StoredResponse(response, self.items, self.conversation))
        return response


@router.post("/v1/responses")
async def create_response(body: ResponseRequest, request: Request) -> Any:
    store = responses_of(request)
    earlier = (store.get(body.previous_response_id, param="previous_response_id").continued()
               if body.previous_response_id else [])
    items = convert.input_items(body)
    turn = Turn(body, items, [*earlier, *items])
    own_tools, server_tools = requested(body.tools, request)
    messages = convert.chat_messages(body.instructions, turn.conversation)
    manager = manager_of(request)
    async with leased_model(manager, body.model) as loaded:
        if server_tools is not None:
            response = await with_server_tools(turn, loaded, messages, own_tools, server_tools,
                                               request, store)
            return (_replayed(response) if body.stream else response)
        prompt, params = shaped(turn, loaded, messages, convert.chat_tools(own_tools),
                                convert.chat_tool_choice(body.tool_choice))
        turn.tools = prompt.tools
        text, add_special = prompt.rendered.text, prompt.rendered.add_special
        if body.stream:
            stream = DeltaStream(loaded, text, params, add_special=add_special,
                                 http_request=request)
            manager.hold(loaded)  # released when the response ends

            def close() -> None:
                stream.close()
                manager.release(loaded)

            return ClosingStreamingResponse(ResponseEvents(turn, store).events(stream), close,
                                            media_type=EVENT_STREAM)
        result = await generate_text(loaded, text, params, add_special=add_special,
                                     http_request=request)
    outcome = Outcome(result.text, result.finish_reason, result.prompt_tokens,
                      result.completion_tokens, result.cached_tokens)
    output = convert.output_items(outcome, turn.tools, message_id=convert.new_id("msg"))
    return turn.finish(output, outcome, store)


def shaped(turn: Turn, loaded: LoadedModel, messages: list[dict[str, Any]],
           tools: list[dict[str, Any]] | None, tool_choice: Any) -> tuple[ChatPrompt,
                                                                          SamplingParams]:
    """The turn's prompt through the frontend, as for chat, and how to sample it."""
    body = turn.body
    prompt = shape_chat(messages, template_of(loaded), tools=tools, tool_choice=tool_choice,
                        parallel_tool_calls=body.parallel_tool_calls,
                        structured=convert.format_constraint(body.text))
    params = SamplingParams.given(
        max_tokens=body.max_output_tokens, temperature=body.temperature,
        top_p=OPENAI_DEFAULT_TOP_P if body.top_p is None else body.top_p,
        stop=prompt.rendered.stop, structured=prompt.structured)
    return prompt, params


async def with_server_tools(turn: Turn, loaded: LoadedModel, messages: list[dict[str, Any]],
                            own_tools: list[dict[str, Any]] | None, server: ServerTools,
                            request: Request, store: ResponseStore) -> Item:
    """The turn with the server's MCP tools: their calls made here, round after round, until
    the model answers, calls one of the request's own tools, or runs out of rounds."""
    tools = [*(convert.chat_tools(own_tools) or []), *server.chat_tools()]
    output: list[Item] = server.list_items()
    used = [0, 0, 0]  # prompt, completion and cached tokens over every round
    for step in range(MAX_SERVER_STEPS):
        last_round = step == MAX_SERVER_STEPS - 1
        choice = (convert.chat_tool_choice(turn.body.tool_choice) if step == 0
                  else "none" if last_round else "auto")
        prompt, params = shaped(turn, loaded, messages, tools, choice)
        turn.tools = prompt.tools
        result = await generate_text(loaded, prompt.rendered.text, params,
                                     add_special=prompt.rendered.add_special,
                                     http_request=request)
        used = [used[0] + result.prompt_tokens, used[1] + result.completion_tokens,
                used[2] + result.cached_tokens]
        outcome = Outcome(result.text, result.finish_reason, *used)
        calls = convert.tool_calls_of(outcome, turn.tools) or []
        ours = [call for call in calls if call.name in server.by_name]
        if not ours:  # whole calls count even when max_output_tokens cut a repeat of them
            break
        made = [await server.call(call.name, call.arguments) for call in ours]
        output.extend(made)
        messages = [*messages, *_round_messages(ours, made)]
        theirs = [call for call in calls if call.name not in server.by_name]
        if theirs:  # the client runs its own tools: hand them over now
            output.extend(convert.function_call_item(call) for call in theirs)
            return turn.finish(output, outcome, store)
    output.extend(item for item in convert.output_items(
        outcome, turn.tools, message_id=convert.new_id("msg"))
        if item.get("name") not in server.by_name)
    return turn.finish(output, outcome, store)


def _round_messages(calls: list[ToolCall], made: list[Item]) -> list[dict[str, Any]]:
    """One round of server-side calls as the conversation shows them to the model."""
    assistant = {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function",
         "function": {"name": call.name, "arguments": call.arguments}} for call in calls]}
    results = [{"role": "tool", "tool_call_id": call.id,
                "content": item["output"] if item["error"] is None else f"error: {item['error']}"}
               for call, item in zip(calls, made, strict=True)]
    return [assistant, *results]


def _replayed(response: Item) -> StreamingResponse:
    """A finished response as the event sequence a stream of it would have sent (the server
    ran its tools between rounds, so the stream starts once the answer is known)."""
    events = ResponseEvents.replay(response)

    async def sent() -> AsyncIterator[str]:
        for event in events:
            yield event
    return StreamingResponse(sent(), media_type=EVENT_STREAM,
                             headers={"Cache-Control": "no-cache"})


@router.get("/v1/responses/{response_id}")
def get_response(response_id: str, request: Request) -> Item:
    return responses_of(request).get(response_id).response


@router.delete("/v1/responses/{response_id}")
def delete_response(response_id: str, request: Request) -> Item:
    responses_of(request).delete(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items")
def list_input_items(response_id: str, request: Request,
                     order: str = Query("desc", pattern="^(asc|desc)$"),
                     limit: int = Query(20, ge=1, le=100)) -> Item:
    items = responses_of(request).get(response_id).input_items
    page = (items[::-1] if order == "desc" else items)[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}


class ResponseEvents:
    """The Responses API's event stream for one turn, built as the deltas arrive.

    With tools, text that opens with ``{`` (or any output when a call is required) is held
    back until it ends, then sent as ``function_call`` items; other text streams as it comes.
    """

    def __init__(self, turn: Turn, store: ResponseStore) -> None:
        self.turn = turn
        self.store = store
        self._sequence = itertools.count()
        self._message_id = convert.new_id("msg")
        self._mode = "text" if turn.tools is None else "undecided"
        self._held: list[str] = []
        self._sent: list[str] = []
        self._opened = False

    async def events(self, stream: DeltaStream) -> AsyncIterator[str]:
        yield self._event("response.created", response=self.turn.response())
        yield self._event("response.in_progress", response=self.turn.response())
        last = None
        try:
            async for delta in stream:
                last = delta
                for event in self._on_text(delta.text, delta.finish_reason is not None):
                    yield event
        except DeskaiError as exc:
            yield self._event("error", code=exc.code, message=exc.message, param=exc.param)
            return
        assert last is not None and last.finish_reason is not None
        outcome = Outcome("".join([*self._sent, *self._held]), last.finish_reason.value,
                          last.prompt_tokens, last.completion_tokens, last.cached_tokens)
        output: list[Item] = []
        for event in self._finish(outcome, output):
            yield event
        response = self.turn.finish(output, outcome, self.store)
        kind = "response.incomplete" if response["status"] == "incomplete" \
            else "response.completed"
        yield self._event(kind, response=response)

    def _on_text(self, text: str, finished: bool) -> list[str]:
        self._held.append(text)
        if self._mode == "undecided":
            self._mode = output_mode("".join(self._held), self.turn.tools,
                                     finished=finished) or "undecided"
        return self._flush_text() if self._mode == "text" else []

    def _flush_text(self) -> list[str]:
        text, self._held = "".join(self._held), []
        if not text:
            return []
        events = self._open_message()
        self._sent.append(text)
        events.append(self._event("response.output_text.delta", item_id=self._message_id,
                                  output_index=0, content_index=0, delta=text, logprobs=[]))
        return events

    def _open_message(self) -> list[str]:
        if self._opened:
            return []
        self._opened = True
        item = convert.message_item(self._message_id, "", status="in_progress")
        return [self._event("response.output_item.added", output_index=0, item=item),
                self._event("response.content_part.added", item_id=self._message_id,
                            output_index=0, content_index=0, part=convert.text_part(""))]

    def _finish(self, outcome: Outcome, output: list[Item]) -> list[str]:
        calls = convert.tool_calls_of(outcome, self.turn.tools) if self._mode == "calls" \
            else None
        if calls:
            return [event for index, call in enumerate(calls)
                    for event in self._call_events(index, call, output)]
        events = self._flush_text() + self._open_message()  # a call that never was: text
        text = "".join(self._sent)
        item = convert.message_item(self._message_id, text)
        output.append(item)
        return [*events,
                self._event("response.output_text.done", item_id=self._message_id,
                            output_index=0, content_index=0, text=text, logprobs=[]),
                self._event("response.content_part.done", item_id=self._message_id,
                            output_index=0, content_index=0, part=convert.text_part(text)),
                self._event("response.output_item.done", output_index=0, item=item)]

    def _call_events(self, index: int, call: ToolCall, output: list[Item]) -> list[str]:
        item = convert.function_call_item(call)
        output.append(item)
        return self._item_events(index, item)

    @classmethod
    def replay(cls, response: Item) -> list[str]:
        """The events of ``response``, already complete, in the order a stream sends them."""
        events = cls.__new__(cls)
        events._sequence = itertools.count()
        started = {**response, "status": "in_progress", "output": [], "usage": None}
        sent = [events._event("response.created", response=started),
                events._event("response.in_progress", response=started)]
        for index, item in enumerate(response["output"]):
            sent.extend(events._item_events(index, item))
        kind = "response.incomplete" if response["status"] == "incomplete" \
            else "response.completed"
        return [*sent, events._event(kind, response=response)]

    def _item_events(self, index: int, item: Item) -> list[str]:
        if item["type"] == "message":
            text = item["content"][0]["text"] if item["content"] else ""
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            return [self._event("response.output_item.added", output_index=index,
                                item={**item, "status": "in_progress", "content": []}),
                    self._event("response.content_part.added", **where,
                                part=convert.text_part("")),
                    self._event("response.output_text.delta", **where, delta=text, logprobs=[]),
                    self._event("response.output_text.done", **where, text=text, logprobs=[]),
                    self._event("response.content_part.done", **where,
                                part=convert.text_part(text)),
                    self._event("response.output_item.done", output_index=index, item=item)]
        if item["type"] != "function_call":
            return [self._event("response.output_item.added", output_index=index, item=item),
                    self._event("response.output_item.done", output_index=index, item=item)]
        # a call opens with empty arguments, which then arrive as deltas
        started = {**item, "arguments": "", "status": "in_progress"}
        return [self._event("response.output_item.added", output_index=index, item=started),
                self._event("response.function_call_arguments.delta", item_id=item["id"],
                            output_index=index, delta=item["arguments"]),
                self._event("response.function_call_arguments.done", item_id=item["id"],
                            output_index=index, arguments=item["arguments"]),
                self._event("response.output_item.done", output_index=index, item=item)]

    def _event(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": next(self._sequence), **fields}
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"

"""/v1/messages and /v1/messages/count_tokens (Anthropic's Messages API).

Each handler converts the request (``convert``: Anthropic's conversation → the OpenAI-shaped
chat ``shape_chat`` renders, so the prompt is the one the other APIs build), runs the one
native path (``generation``) and turns the deltas into Anthropic's events (``stream``), sent as
SSE or folded into one message. Errors on these paths are Anthropic's
``{"type": "error", "error": {...}}`` (``deskai.server.errors``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from deskai.engine.types import Delta
from deskai.frontend.chat import ChatPrompt
from deskai.frontend.chat_template import template_of
from deskai.runtime.manager import LoadedModel
from deskai.server.anthropic import convert
from deskai.server.anthropic.models import (
    AnthropicCountTokensRequest,
    AnthropicError,
    AnthropicMessage,
    AnthropicMessagesRequest,
    AnthropicTokenCount,
)
from deskai.server.anthropic.stream import (
    MessageEvents,
    folded,
    new_message_id,
    sse_response,
)
from deskai.server.generation import DeltaStream, leased_model, manager_of
from deskai.server.openapi import ERROR_STATUSES

router = APIRouter()

# documented here so that the OpenAPI document shows Anthropic's error shape on these paths
_ERRORS: dict[int | str, dict[str, Any]] = {
    int(status): {"model": AnthropicError, "description": text}
    for status, text in ERROR_STATUSES.items()}
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.post("/v1/messages", response_model=AnthropicMessage,
             responses={**_ERRORS, **_STREAMED})
async def create_message(body: AnthropicMessagesRequest, request: Request) -> Any:
    manager = manager_of(request)
    async with leased_model(manager, body.model) as loaded:
        prompt = convert.shape(body, template_of(loaded))
        params = convert.sampling_params(body, prompt)
        tokens = _tokens(loaded, prompt)
        turn = MessageEvents(new_message_id(), body.model, len(tokens), prompt.tools,
                             loaded.engine.token_bytes, stops=params.stop,
                             caller_stops=len(body.stop_sequences or []))
        # started now, so that bad input (a prompt over the context) fails before any byte
        stream = DeltaStream(loaded, tokens, params, http_request=request)
        if body.stream:
            manager.hold(loaded)  # the handler's own lease ends when it returns the response
            return sse_response(turn, stream, on_close=lambda: manager.release(loaded))
        deltas = await _whole(stream, request)
    return folded([*turn.start(), *(event for delta in deltas for event in turn.events(delta))])


@router.post("/v1/messages/count_tokens", response_model=AnthropicTokenCount,
             responses=_ERRORS)
async def count_tokens(body: AnthropicCountTokensRequest, request: Request) -> Any:
    """The prompt the same request to /v1/messages would run, in the model's tokens."""
    async with leased_model(manager_of(request), body.model) as loaded:
        tokens = _tokens(loaded, convert.shape(body, template_of(loaded)))
    request.state.prompt_tokens = len(tokens)
    return AnthropicTokenCount(input_tokens=len(tokens))


def _tokens(loaded: LoadedModel, prompt: ChatPrompt) -> list[int]:
    rendered = prompt.rendered
    return loaded.engine.tokenize(rendered.text, add_special=rendered.add_special)


async def _whole(stream: DeltaStream, request: Request) -> list[Delta]:
    """Every delta of a non-streamed answer; a client that hangs up frees the slot."""
    watcher = asyncio.create_task(_close_on_disconnect(request, stream))
    try:
        return [delta async for delta in stream]
    finally:
        stream.close()
        watcher.cancel()


async def _close_on_disconnect(request: Request, stream: DeltaStream,
                               interval: float = 0.1) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(interval)
    stream.close()

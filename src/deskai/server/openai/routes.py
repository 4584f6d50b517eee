"""OpenAI-compatible handlers: /v1/models, /v1/completions, /v1/chat/completions.

Each handler converts the request (``openai_convert``), runs the one native path
(``generation``) and converts the result back; streaming sends SSE chunks then ``[DONE]``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from deskai.engine.sampling import SamplingParams
from deskai.frontend.chat_template import template_of
from deskai.runtime.manager import LoadedModel
from deskai.server.generation import (
    DeltaStream,
    generate_text,
    leased_model,
    manager_of,
    store_of,
)
from deskai.server.openai import convert
from deskai.server.openai.models import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
)
from deskai.server.openai.stream import (
    ChatChunker,
    Chunker,
    CompletionChunker,
    sse_response,
)

router = APIRouter()


@router.get("/v1/models", response_model=ModelList)
def list_models(request: Request) -> ModelList:
    cards = [ModelCard(id=m.name, created=int(datetime.fromisoformat(m.created_at).timestamp()))
             for m in store_of(request).list()]
    return ModelList(data=cards)


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
def get_model(model_id: str, request: Request) -> ModelCard:
    manifest = store_of(request).get(model_id)
    return ModelCard(id=manifest.name,
                     created=int(datetime.fromisoformat(manifest.created_at).timestamp()))


@router.post("/v1/completions", response_model=Completion)
async def create_completion(body: CompletionRequest, request: Request) -> Any:
    prompt, params = convert.from_completion_request(body)
    async with leased_model(manager_of(request), body.model) as loaded:
        token_bytes = loaded.engine.token_bytes
        every_params = convert.choice_params(params, body.n)
        if body.stream:
            streams = _open_streams(loaded, prompt, every_params, True, request)
            chunkers: list[Chunker] = [CompletionChunker(i, token_bytes, body.logprobs)
                                       for i in range(body.n)]
            return _stream(request, loaded, streams, chunkers, body, chat=False)
        results = await asyncio.gather(*(generate_text(loaded, prompt, p, http_request=request)
                                         for p in every_params))
    return convert.to_completion(list(results), body.model, token_bytes=token_bytes,
                                 logprobs=body.logprobs)


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Any:
    async with leased_model(manager_of(request), body.model) as loaded:
        plan = convert.from_chat_request(body, template_of(loaded))
        token_bytes = loaded.engine.token_bytes
        prompt, add_special = plan.prompt.rendered.text, plan.prompt.rendered.add_special
        every_params = convert.choice_params(plan.params, body.n)
        if body.stream:
            streams = _open_streams(loaded, prompt, every_params, add_special, request)
            chunkers: list[Chunker] = [ChatChunker(i, token_bytes, plan.tools, body.logprobs)
                                       for i in range(body.n)]
            return _stream(request, loaded, streams, chunkers, body, chat=True)
        results = await asyncio.gather(*(
            generate_text(loaded, prompt, p, add_special=add_special, http_request=request)
            for p in every_params))
    return convert.to_chat_completion(list(results), body.model, plan=plan,
                                      token_bytes=token_bytes)


def _open_streams(loaded: LoadedModel, prompt: str | list[int],
                  every_params: list[SamplingParams], add_special: bool,
                  request: Request) -> list[DeltaStream]:
    """Start every choice's generation now, so that bad input fails before any byte is sent."""
    streams: list[DeltaStream] = []
    try:
        for params in every_params:
            streams.append(DeltaStream(loaded, prompt, params, add_special=add_special,
                                       http_request=request))
    except BaseException:
        for stream in streams:
            stream.close()
        raise
    return streams


def _stream(request: Request, loaded: LoadedModel, streams: list[DeltaStream],
            chunkers: list[Chunker], body: CompletionRequest | ChatCompletionRequest, *,
            chat: bool) -> StreamingResponse:
    """SSE for ``streams``; the model stays leased until the last chunk is sent."""
    manager = manager_of(request)
    manager.hold(loaded)  # the handler's own lease ends when it returns the response
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return sse_response(streams, chunkers, model=body.model, chat=chat,
                        include_usage=include_usage, on_close=lambda: manager.release(loaded))

"""OpenAI-compatible handlers: /v1/models, /v1/completions, /v1/chat/completions.

Each handler converts the request (``openai_convert``), runs the one native path
(``generation``) and converts the result back; streaming sends SSE chunks then ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from deskai.engine.manager import LoadedModel, ModelManager
from deskai.engine.request import Delta
from deskai.errors import DeskaiError
from deskai.server import openai_convert as convert
from deskai.server.errors import error_body
from deskai.server.generation import DeltaStream, generate_text, leased_model
from deskai.server.openai_models import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
)
from deskai.store import Store

router = APIRouter()
ChunkMaker = Callable[[Delta], dict[str, Any]]


def _manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.get("/v1/models", response_model=ModelList)
def list_models(request: Request) -> ModelList:
    cards = [ModelCard(id=m.name, created=int(datetime.fromisoformat(m.created_at).timestamp()))
             for m in _store(request).list()]
    return ModelList(data=cards)


@router.post("/v1/completions", response_model=Completion)
async def create_completion(body: CompletionRequest, request: Request) -> Any:
    prompt, params = convert.from_completion_request(body)
    async with leased_model(_manager(request), body.model) as loaded:
        if body.stream:
            return _sse_response(request, loaded, body.model, DeltaStream(
                loaded, prompt, params, http_request=request), chat=False,
                include_usage=_wants_usage(body))
        result = await generate_text(loaded, prompt, params, http_request=request)
    return convert.to_completion(result, body.model)


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Any:
    async with leased_model(_manager(request), body.model) as loaded:
        rendered, params = convert.from_chat_request(body, loaded.template)
        if body.stream:
            return _sse_response(request, loaded, body.model, DeltaStream(
                loaded, rendered.text, params, add_special=rendered.add_special,
                http_request=request), chat=True, include_usage=_wants_usage(body))
        result = await generate_text(loaded, rendered.text, params,
                                     add_special=rendered.add_special, http_request=request)
    return convert.to_chat_completion(result, body.model)


def _wants_usage(body: CompletionRequest | ChatCompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _sse_response(request: Request, loaded: LoadedModel, model: str, stream: DeltaStream, *,
                  chat: bool, include_usage: bool) -> StreamingResponse:
    """Stream ``stream`` as SSE; the model stays leased until the last chunk is sent."""
    chunk_id = convert.new_id("chatcmpl" if chat else "cmpl")
    created = convert.now()
    make: ChunkMaker = (
        (lambda d: convert.to_chat_chunk(d, chunk_id=chunk_id, created=created, model=model))
        if chat else
        (lambda d: convert.to_completion_chunk(d, chunk_id=chunk_id, created=created,
                                               model=model)))
    manager = _manager(request)
    manager.hold(loaded)  # the handler's own lease ends when it returns the response

    async def events() -> AsyncIterator[str]:
        try:
            if chat:
                yield convert.sse(convert.to_chat_chunk(None, chunk_id=chunk_id,
                                                        created=created, model=model))
            last: Delta | None = None
            async for delta in stream:
                last = delta
                if delta.text or delta.finish_reason is not None:
                    yield convert.sse(make(delta))
            if include_usage and last is not None:
                yield convert.sse(convert.to_usage_chunk(last, chunk_id=chunk_id,
                                                         created=created, model=model,
                                                         chat=chat))
        except DeskaiError as exc:
            yield convert.sse(error_body(exc.message, exc.error_type, param=exc.param,
                                         code=exc.code))
        finally:
            stream.close()
            manager.release(loaded)
        yield convert.sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})

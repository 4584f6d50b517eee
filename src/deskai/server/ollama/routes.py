"""Ollama-compatible handlers under /api, on the same port as the OpenAI routes.

Generation goes through the one native path (``generation.leased_model`` + ``DeltaStream``);
``ollama_convert`` does the translation. Streaming is NDJSON, one object per line, and is on
unless the request says ``"stream": false``. Errors are Ollama's ``{"error": "..."}`` (shaped
in ``deskai.server.errors`` for every ``/api/`` path).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from deskai import __version__
from deskai.engine.types import Embeddings, FinishReason
from deskai.errors import DeskaiError
from deskai.frontend.chat_template import template_of
from deskai.frontend.tools import ToolPlan, output_mode
from deskai.runtime.manager import LoadedModel, ModelManager
from deskai.server.generation import (
    ClosingStreamingResponse,
    DeltaStream,
    leased_model,
    manager_of,
    store_of,
)
from deskai.server.ollama import convert
from deskai.server.ollama.models import (
    ChatRequest,
    CopyRequest,
    EmbedRequest,
    GenerateRequest,
    KeepAlive,
    LegacyEmbeddingRequest,
    ModelRequest,
    PsResponse,
    PullRequest,
    ShowResponse,
    TagsResponse,
    VersionResponse,
)
from deskai.server.ollama.show import show_model
from deskai.store import Store, parse_model_name
from deskai.store.pull import PullCancelled, PullProgress, pull
from deskai.store.sources import parse_pull_ref

log = logging.getLogger("deskai.server")
router = APIRouter(prefix="/api")
NDJSON = "application/x-ndjson"


# -- models -----------------------------------------------------------------------------------

@router.get("/version", response_model=VersionResponse)
def version() -> VersionResponse:
    return VersionResponse(version=__version__)


@router.get("/tags", response_model=TagsResponse)
def tags(request: Request) -> TagsResponse:
    return TagsResponse(models=[convert.to_listed(m) for m in store_of(request).list()])


@router.post("/show", response_model=ShowResponse)
def show(body: ModelRequest, request: Request) -> ShowResponse:
    return show_model(store_of(request), body.model, verbose=body.verbose)


@router.get("/ps", response_model=PsResponse)
def ps(request: Request) -> PsResponse:
    now = time.monotonic()
    return PsResponse(models=[convert.to_running(m, now_monotonic=now)
                              for m in manager_of(request).loaded()])


@router.post("/copy")
def copy(body: CopyRequest, request: Request) -> Response:
    store_of(request).copy(body.source, body.destination)
    return Response(status_code=200)


@router.delete("/delete")
def delete(body: ModelRequest, request: Request) -> Response:
    store = store_of(request)
    store.get(body.model)  # 404 before anything changes
    _unload(manager_of(request), body.model)
    store.remove(body.model)
    return Response(status_code=200)


# -- generation -------------------------------------------------------------------------------

@router.post("/generate")
async def generate(body: GenerateRequest, request: Request) -> Any:
    return await _generation(body, request)


@router.post("/chat")
async def chat(body: ChatRequest, request: Request) -> Any:
    return await _generation(body, request)


async def _generation(body: GenerateRequest | ChatRequest, request: Request) -> Any:
    convert.check_unsupported(body)
    keep_alive = convert.parse_keep_alive(body.keep_alive)
    manager = manager_of(request)
    if convert.is_load_only(body):
        return await _load_or_unload(body, request, keep_alive)
    timings = convert.Timings(start=time.monotonic_ns(), loaded=0)
    async with leased_model(manager, body.model, keep_alive) as loaded:
        timings.loaded = time.monotonic_ns()
        stream, prompt_tokens, plan = _start(body, loaded, request)
        lines = _lines(body, stream, timings, prompt_tokens, plan)
        if body.stream:
            manager.hold(loaded)  # released when the response ends

            def close() -> None:
                stream.close()
                manager.release(loaded)

            return ClosingStreamingResponse(_ndjson_lines(lines), close, media_type=NDJSON)
        try:
            return JSONResponse(await _merged(lines, chat=isinstance(body, ChatRequest)))
        finally:
            stream.close()


def _start(body: GenerateRequest | ChatRequest, loaded: LoadedModel,
           request: Request) -> tuple[DeltaStream, list[int], ToolPlan | None]:
    """Render, tokenize and queue the request; errors (too long, bad schema) surface here."""
    template = template_of(loaded)
    plan: ToolPlan | None = None
    if isinstance(body, ChatRequest):
        prompt = convert.from_chat_request(body, template)
        rendered, plan, structured = prompt.rendered, prompt.tools, prompt.structured
    else:
        rendered = convert.from_generate_request(body, template)
        structured = convert.format_constraint(body.format)
    params = convert.sampling_params(body.options, extra_stop=rendered.stop,
                                     structured=structured)
    engine = loaded.engine
    if isinstance(body, GenerateRequest) and body.context:
        # a previous answer's ``context``: continue it, without a second BOS
        tokens = list(body.context) + engine.tokenize(rendered.text, add_special=False)
    else:
        tokens = engine.tokenize(rendered.text, add_special=rendered.add_special)
    return DeltaStream(loaded, tokens, params, http_request=request), tokens, plan


async def _lines(body: GenerateRequest | ChatRequest, stream: DeltaStream,
                 timings: convert.Timings, prompt_tokens: list[int], plan: ToolPlan | None
                 ) -> AsyncIterator[dict[str, Any]]:
    """Ollama's objects for one generation: a line per piece of text, then the ``done`` line.

    With tools, output that opens with ``{`` is a call (the grammar lets plain answers start
    with anything else): it is held back and sent as one ``tool_calls`` message, as Ollama does.
    """
    chat = isinstance(body, ChatRequest)
    make = convert.chat_chunk if chat else convert.generate_chunk
    output: list[int] = []
    held: list[str] = []
    mode = output_mode("", plan, finished=False)  # with tools: None until the output shows
    async for delta in stream:
        if timings.first_token is None:
            timings.first_token = time.monotonic_ns()
        output.extend(delta.token_ids)
        if mode is None:
            mode = output_mode("".join(held) + delta.text, plan,
                               finished=delta.finish_reason is not None)
        if mode != "text":
            held.append(delta.text)
        elif delta.text:
            yield make(body.model, "".join(held) + delta.text)
            held = []
        if delta.finish_reason is not None:
            timings.end = time.monotonic_ns()
            if held:
                yield _held_message(body.model, "".join(held),
                                    cut_short=delta.finish_reason is FinishReason.LENGTH)
            extra = {} if chat else {"context": prompt_tokens + output}
            reason = "length" if delta.finish_reason.value == "length" else "stop"
            yield convert.done_chunk(make(body.model, ""), reason,
                                     timings.stats(delta.prompt_tokens,
                                                   delta.completion_tokens), **extra)


def _held_message(model: str, text: str, *, cut_short: bool) -> dict[str, Any]:
    line = convert.chat_chunk(model, text)
    calls = convert.to_tool_calls(text, cut_short=cut_short)
    if calls:
        line["message"] = {"role": "assistant", "content": "", "tool_calls": calls}
    return line


async def _merged(lines: AsyncIterator[dict[str, Any]], *, chat: bool) -> dict[str, Any]:
    """``stream: false``: the done line, carrying the whole text."""
    parts: list[str] = []
    calls: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    async for line in lines:
        parts.append(line["message"]["content"] if chat else line["response"])
        calls.extend(line["message"].get("tool_calls", []) if chat else [])
        last = line
    if chat:
        last["message"] = {"role": "assistant", "content": "".join(parts),
                           **({"tool_calls": calls} if calls else {})}
    else:
        last["response"] = "".join(parts)
    return last


async def _ndjson_lines(lines: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    try:
        async for line in lines:
            yield convert.ndjson(line)
    except DeskaiError as exc:  # after the 200 went out, Ollama reports errors in-stream
        yield convert.ndjson({"error": exc.message})


async def _load_or_unload(body: GenerateRequest | ChatRequest, request: Request,
                          keep_alive: float | None) -> JSONResponse:
    """No input: load the model (``done_reason: load``), or unload it with keep_alive 0."""
    store_of(request).get(body.model)  # 404 for an unknown model either way
    chat = isinstance(body, ChatRequest)
    base = (convert.chat_chunk if chat else convert.generate_chunk)(body.model, "")
    if keep_alive == 0:
        _unload(manager_of(request), body.model)
        return JSONResponse(convert.done_chunk(base, "unload"))
    async with leased_model(manager_of(request), body.model, keep_alive):
        pass
    return JSONResponse(convert.done_chunk(base, "load"))


def _unload(manager: ModelManager, name: str) -> None:
    """Expire the model now; the reaper never closes one a request still holds."""
    key = str(parse_model_name(name))
    for loaded in manager.loaded():
        if loaded.name == key:
            loaded.touch(0.0)
    manager.reap()


# -- embeddings -------------------------------------------------------------------------------

@router.post("/embed")
async def embed(body: EmbedRequest, request: Request) -> dict[str, Any]:
    inputs = [body.input] if isinstance(body.input, str) else list(body.input)
    start = time.monotonic_ns()
    result, loaded_at = await _embeddings(request, body.model, inputs, body.keep_alive)
    vectors = [[float(x) for x in vector[: body.dimensions or None]] for vector in result.vectors]
    end = time.monotonic_ns()
    return {"model": body.model, "embeddings": vectors, "total_duration": end - start,
            "load_duration": loaded_at - start, "prompt_eval_count": result.prompt_tokens}


@router.post("/embeddings")
async def legacy_embeddings(body: LegacyEmbeddingRequest, request: Request) -> dict[str, Any]:
    """The pre-``/api/embed`` route: one prompt in, one ``embedding`` out."""
    result, _ = await _embeddings(request, body.model, [body.prompt], body.keep_alive)
    return {"embedding": [float(x) for x in result.vectors[0]]}


async def _embeddings(request: Request, model: str, inputs: list[str],
                      keep_alive: KeepAlive) -> tuple[Embeddings, int]:
    """``inputs`` embedded by ``model``, and when the model was ready (ns)."""
    async with leased_model(manager_of(request), model,
                            convert.parse_keep_alive(keep_alive)) as loaded:
        loaded_at = time.monotonic_ns()
        result = await asyncio.to_thread(loaded.embed, inputs)
    request.state.prompt_tokens = result.prompt_tokens
    return result, loaded_at


# -- pulling ----------------------------------------------------------------------------------

@router.post("/pull")
async def pull_model(body: PullRequest, request: Request) -> Any:
    parse_pull_ref(body.model, insecure=body.insecure)  # a bad reference is a plain 400
    store = store_of(request)
    if not body.stream:
        await asyncio.to_thread(pull, store, body.model, insecure=body.insecure)
        return {"status": "success"}
    return StreamingResponse(_pull_lines(store, body), media_type=NDJSON)


async def _pull_lines(store: Store, body: PullRequest) -> AsyncIterator[str]:
    """Ollama's pull status stream; a client that goes away cancels the download (the
    partial file is kept, so pulling again resumes)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[PullProgress | BaseException | None] = asyncio.Queue()
    cancel = threading.Event()

    def work() -> None:
        try:
            pull(store, body.model, insecure=body.insecure, cancel=cancel,
                 progress=lambda event: loop.call_soon_threadsafe(queue.put_nowait, event))
            outcome: BaseException | None = None
        except BaseException as exc:  # handed to the event loop, reported there
            outcome = exc
        loop.call_soon_threadsafe(queue.put_nowait, outcome)

    worker = threading.Thread(target=work, name="deskai-pull", daemon=True)
    worker.start()
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, PullProgress):
                yield convert.ndjson(item.to_dict())
                continue
            if not isinstance(item, DeskaiError | PullCancelled):
                log.error("pull of %s failed", body.model, exc_info=item)
            message = item.message if isinstance(item, DeskaiError) else "pull failed; see log"
            yield convert.ndjson({"error": message})
            break
    finally:
        cancel.set()

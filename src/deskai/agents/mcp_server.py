"""deskai as an MCP server (the SDK's ``FastMCP``): its models and its planner as tools for any
MCP host — Claude Desktop, Cursor, an agent framework, ``deskai agent`` itself.

Tools: ``list_models``, ``show``, ``fit``, ``generate`` (a prompt → text), ``chat`` (messages →
text), ``embed``. Models run in-process through a ``runtime.ModelManager``: ``deskai mcp``'s own
over stdio, or, mounted at ``/mcp`` by ``deskai serve`` (``mount``), the server's — one set of
loaded models for both APIs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import replace
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import FastAPI
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.server import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field

from deskai import config
from deskai.agents.planning import fit_report
from deskai.engine.sampling import SamplingParams
from deskai.engine.types import Delta
from deskai.errors import InvalidInputError
from deskai.frontend.chat import shape_chat
from deskai.frontend.chat_template import template_of
from deskai.runtime.manager import ModelManager
from deskai.store import BUNDLED_EMBEDDING_MODEL, Store, read_gguf_info, resolve_model_path

INSTRUCTIONS = (
    "deskai runs open models on this machine, offline. list_models names them; generate "
    "continues a prompt and chat answers a conversation with one of them; embed turns text into "
    "vectors; fit tells whether a model would fit this machine (or a catalog system) and how "
    "fast it would run.")
_ROLES = ("system", "user", "assistant")
T = TypeVar("T")

# Schemas a model's grammar can enforce, since deskai refuses tools whose schema it cannot: no
# minimum/maximum (SamplingParams and the planner check the values) and no nested models
# (their $defs would not resolve once the tools' schemas are combined).
Messages = Annotated[list[dict[str, str]], Field(
    description='The conversation: [{"role": "system" | "user" | "assistant", "content": '
                '"..."}, ...]')]
ModelName = Annotated[str | None, Field(description="A model in the store (list_models); "
                                        "default: deskai's default model.")]
MaxTokens = Annotated[int, Field(description="Most tokens to generate (at least 1).")]
Temperature = Annotated[float, Field(description="From 0 (greedy) to 2.")]


def build_server(manager: ModelManager, store: Store) -> FastMCP:
    """deskai's tools over ``manager`` (its models) and ``store`` (their files)."""
    # over HTTP deskai's own site guard (Host/Origin, --allowed-hosts) runs before the SDK's,
    # whose loopback-only default would refuse what the user allowed; stateless JSON replies:
    # no session to keep, nothing pushed to the client
    server = FastMCP("deskai", instructions=INSTRUCTIONS, log_level="WARNING",
                     stateless_http=True, json_response=True,
                     transport_security=TransportSecuritySettings(
                         enable_dns_rebinding_protection=False))
    # the server's request log has one line per call already; the SDK's would add two more
    logging.getLogger("mcp.server").setLevel(logging.WARNING)
    tool = _tool_of(server)

    @tool
    def list_models() -> list[dict[str, Any]]:
        """The models in deskai's store, and which are loaded now."""
        loaded = {model.name for model in manager.loaded()}
        return [{"name": m.name, "size": m.size,
                 "architecture": m.details.get("architecture"),
                 "parameter_count": m.details.get("parameter_count"),
                 "quantization": m.details.get("quantization"), "loaded": m.name in loaded}
                for m in store.list()]

    @tool
    def show(model: str) -> dict[str, Any]:
        """A model's facts from its GGUF header: architecture, parameters, quantization,
        context length, file size."""
        manifest = store.get(model)
        info = read_gguf_info(resolve_model_path(store, model))
        return {"name": manifest.name, "digest": manifest.model_layer.digest,
                **info.to_dict(with_template=False)}

    @tool
    async def fit(model: str, on: str | None = None, context: int | None = None,
                  quant: str | None = None, batch: int = 1) -> dict[str, Any]:
        """Will a model (a catalog name such as llama3-8b, or a store name) fit in memory, with
        which quantization and context, and how fast will it run? On this machine, or on a
        catalog system (on='dgx-spark', 'h100', ...)."""
        return await anyio.to_thread.run_sync(lambda: fit_report(
            model, on=on, context=context, quant=quant, batch=batch, store=store))

    @tool
    async def generate(prompt: str, model: ModelName = None, max_tokens: MaxTokens = 256,
                       temperature: Temperature = 0.0, seed: int | None = None) -> str:
        """Continue a prompt with a local model (plain completion, no chat format)."""
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        return await _cancellable(lambda stop: _complete(manager, model, prompt, params, stop))

    @tool
    async def chat(messages: Messages, model: ModelName = None, max_tokens: MaxTokens = 256,
                   temperature: Temperature = 0.0, seed: int | None = None) -> str:
        """Answer a conversation with a local model, in its own chat format."""
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        conversation = [_message(message) for message in messages]
        return await _cancellable(
            lambda stop: _chat(manager, model, conversation, params, stop))

    @tool
    async def embed(input: str | list[str],  # OpenAI's name for it
                    model: str = BUNDLED_EMBEDDING_MODEL) -> list[list[float]]:
        """Embedding vectors of one text or several, from an embedding model."""
        texts = [input] if isinstance(input, str) else input

        def run() -> list[list[float]]:
            with manager.use(model) as loaded:
                return [vector.tolist() for vector in loaded.embed(texts).vectors]

        return await anyio.to_thread.run_sync(run)

    return server


def _message(message: dict[str, str]) -> dict[str, str]:
    role, content = message.get("role"), message.get("content")
    if role not in _ROLES or not isinstance(content, str) or set(message) - {"role", "content"}:
        raise InvalidInputError('each message is {"role": "system" | "user" | "assistant", '
                                '"content": "..."}', param="messages")
    return {"role": role, "content": content}


def _tool_of(server: FastMCP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``server.tool()`` with the docstring as one line (the SDK would keep its indentation)."""
    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        return server.tool(description=" ".join((function.__doc__ or "").split()))(function)

    return register


async def _cancellable(work: Callable[[threading.Event], T]) -> T:
    """``work`` on a worker thread; if the client cancels the call, ``work`` is told to stop
    (its generation is cancelled) and the call returns at once."""
    stop = threading.Event()
    try:
        return await anyio.to_thread.run_sync(work, stop, abandon_on_cancel=True)
    finally:
        stop.set()


def _complete(manager: ModelManager, model: str | None, prompt: str, params: SamplingParams,
              stop: threading.Event) -> str:
    with manager.use(model or config.default_model()) as loaded:
        return _text(loaded.generate(prompt, params), stop)


def _chat(manager: ModelManager, model: str | None, messages: list[dict[str, Any]],
          params: SamplingParams, stop: threading.Event) -> str:
    with manager.use(model or config.default_model()) as loaded:
        rendered = shape_chat(messages, template_of(loaded)).rendered
        params = replace(params, stop=[*params.stop, *rendered.stop])
        return _text(loaded.generate(rendered.text, params, add_special=rendered.add_special),
                     stop)


def _text(deltas: Iterator[Delta], stop: threading.Event) -> str:
    pieces = []
    with closing(deltas):  # type: ignore[type-var]  # a generator: closing it cancels
        for delta in deltas:
            pieces.append(delta.text)
            if stop.is_set():
                break
    return "".join(pieces)


def mount(app: FastAPI, manager: ModelManager, store: Store, path: str = "/mcp") -> None:
    """deskai's MCP server at ``path`` of ``app`` (streamable HTTP), over the app's manager.

    A route rather than a mounted sub-application: ``path`` itself answers (a mount would
    redirect it to ``path/``), and the app's middlewares — site guard, API key, body limit —
    run first as for every route. The SDK's session manager must run for as long as the app
    does: it joins the app's lifespan (a mounted app's own lifespan would never run).
    """
    server = build_server(manager, store)
    server.streamable_http_app()  # makes the session manager, which the SDK creates lazily
    sessions = server.session_manager
    # an ASGI app as the endpoint (typed for request functions; the SDK routes it the same way)
    app.add_route(path, StreamableHTTPASGIApp(sessions),  # type: ignore[arg-type]
                  include_in_schema=False)
    app.router.lifespan_context = _alongside(sessions.run, app.router.lifespan_context)


def _alongside(run: Callable[[], AbstractAsyncContextManager[None]],
               lifespan: Callable[[Any], AbstractAsyncContextManager[Any]]
               ) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def both(app: Any) -> AsyncIterator[Any]:
        async with run(), lifespan(app) as state:
            yield state

    return both

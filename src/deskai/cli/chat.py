"""Where ``deskai run`` gets its tokens: a running server if there is one, else in-process.

Both backends offer the same two calls (complete a prompt, continue a chat) as iterators of
text; closing an iterator early (Ctrl-C) cancels the generation on either side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Protocol

from deskai.client import ServerClient
from deskai.engine.protocol import EngineOptions
from deskai.engine.sampling import SamplingParams
from deskai.errors import InvalidInputError
from deskai.frontend.chat import shape_chat
from deskai.frontend.chat_template import template_of
from deskai.planner.placement import GpuLayers
from deskai.runtime.manager import ModelManager
from deskai.store import Store


class TextBackend(Protocol):
    def complete(self, prompt: str, params: SamplingParams) -> Iterator[str]: ...

    def chat(self, messages: list[dict[str, Any]], params: SamplingParams) -> Iterator[str]: ...

    def close(self) -> None: ...


class ServerBackend:
    """Talks to ``deskai serve`` through its OpenAI API."""

    def __init__(self, client: ServerClient, model: str) -> None:
        self.client = client
        self.model = model

    def complete(self, prompt: str, params: SamplingParams) -> Iterator[str]:
        return self.client.stream_completion(self.model, prompt, **wire_params(params))

    def chat(self, messages: list[dict[str, Any]], params: SamplingParams) -> Iterator[str]:
        return self.client.stream_chat(self.model, messages, **wire_params(params))

    def close(self) -> None:
        self.client.close()


class LocalBackend:
    """Loads the model in this process."""

    def __init__(self, model: str, options: EngineOptions,
                 gpu_layers: GpuLayers = "auto") -> None:
        self.manager = ModelManager(Store(), options, keep_alive=-1, gpu_layers=gpu_layers)
        self.loaded = self.manager.get(model)

    def complete(self, prompt: str, params: SamplingParams) -> Iterator[str]:
        for delta in self.loaded.generate(prompt, params):
            yield delta.text

    def chat(self, messages: list[dict[str, Any]], params: SamplingParams) -> Iterator[str]:
        rendered = shape_chat(messages, template_of(self.loaded)).rendered
        params = replace(params, stop=[*params.stop, *rendered.stop])
        for delta in self.loaded.generate(rendered.text, params,
                                          add_special=rendered.add_special):
            yield delta.text

    def close(self) -> None:
        self.manager.close()


def wire_params(params: SamplingParams) -> dict[str, Any]:
    """Every sampling setting as the OpenAI routes take it (llama-server's extensions for
    ``top_k``, ``min_p``, ``repeat_penalty``), so nothing is lost on the way to a server."""
    if params.structured is not None:
        raise InvalidInputError("deskai run sends no structured output", param="structured")
    wire: dict[str, Any] = {
        "max_tokens": params.max_tokens, "temperature": params.temperature,
        "top_p": params.top_p, "top_k": params.top_k, "min_p": params.min_p,
        "repeat_penalty": params.repeat_penalty, "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty, "seed": params.seed,
        "stop": params.stop or None,
        "logit_bias": {str(token): bias for token, bias in params.logit_bias.items()} or None,
    }
    if params.logprobs is not None:
        wire["logprobs"] = params.logprobs
    return {name: value for name, value in wire.items() if value is not None}


def open_backend(model: str, options: EngineOptions, *, url: str | None, local: bool,
                 gpu_layers: GpuLayers = "auto") -> TextBackend:
    """The running server at ``url`` when it answers (and ``local`` is off), else in-process."""
    if not local:
        client = ServerClient(url)
        if client.is_up():
            return ServerBackend(client, model)
        client.close()
    return LocalBackend(model, options, gpu_layers)

"""Where an agent's model turns run: a running server if there is one, else in-process (as
``deskai run`` chooses) — with the same prompt either way.

A turn takes the conversation in OpenAI's shape (assistant messages with ``tool_calls``,
``role: "tool"`` results) and the tools; in-process it is rendered by ``frontend.chat.shape_chat``
and its calls parsed by ``frontend.tools.parse_tool_calls``, the very code the server's
/v1/chat/completions runs, so no second prompt format exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from deskai import config
from deskai.agents.server_chat import ToolChatClient
from deskai.engine.protocol import EngineOptions
from deskai.engine.sampling import SamplingParams
from deskai.frontend.chat import shape_chat
from deskai.frontend.chat_template import template_of
from deskai.frontend.tools import ToolCall, parse_tool_calls
from deskai.runtime.manager import LoadedModel, ModelManager
from deskai.store import Store


@dataclass(frozen=True, slots=True)
class Turn:
    """What the model said: tool calls, or else text."""

    text: str
    calls: list[ToolCall]
    finish_reason: str


class ChatModel(Protocol):
    def turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
             tool_choice: Any, parallel_tool_calls: bool) -> Turn:
        """One model turn (blocking)."""
        ...


class LocalChatModel:
    """A model loaded in this process."""

    def __init__(self, loaded: LoadedModel, params: SamplingParams) -> None:
        self.loaded = loaded
        self.params = params

    def turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
             tool_choice: Any, parallel_tool_calls: bool) -> Turn:
        shaped = shape_chat(messages, template_of(self.loaded), tools=tools or None,
                            tool_choice=tool_choice if tools else None,
                            parallel_tool_calls=parallel_tool_calls)
        params = replace(self.params, stop=[*self.params.stop, *shaped.rendered.stop],
                         structured=shaped.structured)
        pieces, finish = [], "stop"
        for delta in self.loaded.generate(shaped.rendered.text, params,
                                          add_special=shaped.rendered.add_special):
            pieces.append(delta.text)
            if delta.finish_reason is not None:
                finish = delta.finish_reason.value
        text = "".join(pieces)
        calls = None
        # as the server does: the whole calls before a max_tokens cut still count
        if shaped.tools is not None and finish in ("stop", "length"):
            calls = parse_tool_calls(text, cut_short=finish == "length")
        return Turn("" if calls else text, calls or [], finish)


class ServerChatModel:
    """A model behind a running server's /v1/chat/completions."""

    def __init__(self, client: ToolChatClient, model: str, params: SamplingParams) -> None:
        self.client = client
        self.model = model
        self.wire = {"max_tokens": params.max_tokens, "temperature": params.temperature,
                     "seed": params.seed}

    def turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
             tool_choice: Any, parallel_tool_calls: bool) -> Turn:
        choice = self.client.chat_with_tools(
            self.model, messages, tools=tools, tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            **{name: value for name, value in self.wire.items() if value is not None})
        message = choice.get("message") or {}
        calls = [ToolCall(call["id"], call["function"]["name"],
                          call["function"].get("arguments") or "{}")
                 for call in message.get("tool_calls") or []]
        return Turn(message.get("content") or "", calls, choice.get("finish_reason") or "stop")


@contextlib.contextmanager
def open_chat_model(model: str, params: SamplingParams, options: EngineOptions, *,
                    url: str | None, local: bool) -> Iterator[ChatModel]:
    """The running server at ``url`` when it answers (and ``local`` is off), else ``model``
    loaded in this process for the duration of the block."""
    if not local:
        client = ToolChatClient(url, api_key=config.api_key())
        try:
            if client.is_up():
                yield ServerChatModel(client, model, params)
                return
        finally:
            client.close()
    manager = ModelManager(Store(), options, keep_alive=-1)
    try:
        yield LocalChatModel(manager.get(model), params)
    finally:
        manager.close()

"""A chat turn with tools against a running ``deskai serve`` (or any OpenAI-compatible server):
the one request ``deskai.client.ServerClient`` lacks for agents."""

from __future__ import annotations

from typing import Any

from deskai.client import ServerClient, error_from
from deskai.errors import DeskaiError


class ToolChatClient(ServerClient):
    def chat_with_tools(self, model: str, messages: list[dict[str, Any]], *,
                        tools: list[dict[str, Any]] | None, tool_choice: Any,
                        parallel_tool_calls: bool, **params: Any) -> dict[str, Any]:
        """``/v1/chat/completions`` (not streamed): the first choice, with its
        ``finish_reason`` and ``message`` (``content`` and/or ``tool_calls``)."""
        body: dict[str, Any] = {"model": model, "messages": messages, **params}
        if tools:  # an empty list is a 400 on OpenAI's API: send none at all
            body.update(tools=tools, tool_choice=tool_choice,
                        parallel_tool_calls=parallel_tool_calls)
        response = self._http.post("/v1/chat/completions", json=body)
        if response.status_code != 200:
            raise error_from(response)
        choices = response.json().get("choices") or []
        if not choices:
            raise DeskaiError("the server answered without a choice")
        return dict(choices[0])

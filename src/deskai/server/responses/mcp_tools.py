"""Server-side MCP tools for the Responses API (``deskai serve --mcp servers.json``).

The servers of the file are connected once, for the server's lifetime (a Toolbox in the app's
lifespan). A request asks for one by label — ``{"type": "mcp", "server_label": "calc"}``, as
OpenAI's API does — and deskai runs the loop itself: the model's calls to that server's tools
are made, each becoming an ``mcp_call`` output item, and their results go back to the model
until it answers (or calls one of the request's own function tools, which the client runs).
A request may not name a server URL: deskai connects only to what its operator configured.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request

from deskai.agents.servers import ServerConfig
from deskai.agents.toolbox import Toolbox, ToolSpec
from deskai.errors import InvalidInputError
from deskai.server.responses.convert import Item, new_id

MAX_SERVER_STEPS = 8  # rounds of server-side calls before the model must answer


def install_toolbox(app: FastAPI, servers: Sequence[ServerConfig]) -> None:
    """Connect ``servers`` when the app starts, for as long as it runs (``app.state.toolbox``);
    a server that cannot start stops the app from starting, with its one-line reason."""
    from deskai.agents.mcp_client import open_toolbox  # the SDK: only when configured

    outer = app.router.lifespan_context

    @asynccontextmanager
    async def with_toolbox(app_: Any) -> AsyncIterator[Any]:
        async with open_toolbox(servers) as toolbox, outer(app_) as state:
            app.state.toolbox = toolbox
            yield state

    app.router.lifespan_context = with_toolbox


@dataclass(frozen=True, slots=True)
class ServerTools:
    """The configured MCP tools one request asked for, by the name the model calls them."""

    toolbox: Toolbox
    by_name: dict[str, tuple[str, ToolSpec]]  # call name → (server label, tool)

    def chat_tools(self) -> list[dict[str, Any]]:
        return [spec.function(name) for name, (_, spec) in self.by_name.items()]

    def list_items(self) -> list[Item]:
        """One ``mcp_list_tools`` item per server, as OpenAI's API starts its output."""
        labels = dict.fromkeys(label for label, _ in self.by_name.values())
        return [{"type": "mcp_list_tools", "id": new_id("mcpl"), "server_label": label,
                 "tools": [{"name": spec.name, "description": spec.description,
                            "input_schema": spec.parameters, "annotations": None}
                           for owner, spec in self.by_name.values() if owner == label]}
                for label in labels]

    async def call(self, name: str, arguments: str) -> Item:
        """Run a call the model made; an ``mcp_call`` item with its output or error."""
        label, spec = self.by_name[name]
        output: str | None
        error: str | None
        try:
            parsed = _json_object(arguments)
        except ValueError as exc:
            output, error = None, str(exc)
        else:
            result = await self.toolbox.call(name, parsed)
            output, error = (None, result.text) if result.is_error else (result.text, None)
        return {"type": "mcp_call", "id": new_id("mcp"), "server_label": label,
                "name": spec.name, "arguments": arguments, "output": output, "error": error,
                "status": "completed" if error is None else "failed"}


def requested(tools: list[dict[str, Any]] | None, request: Request
              ) -> tuple[list[dict[str, Any]] | None, ServerTools | None]:
    """Split a request's tools into its own (for the client to run) and server MCP tools."""
    own = [tool for tool in tools or [] if tool.get("type") != "mcp"]
    asked = [tool for tool in tools or [] if tool.get("type") == "mcp"]
    if not asked:
        return tools, None
    toolbox: Toolbox | None = getattr(request.app.state, "toolbox", None)
    if toolbox is None:
        raise InvalidInputError("this server runs no MCP servers; start it with "
                                "`deskai serve --mcp servers.json`", param="tools")
    by_name: dict[str, tuple[str, ToolSpec]] = {}
    for tool in asked:
        label = _checked(tool, toolbox)
        allowed = tool.get("allowed_tools")
        for name, spec in toolbox.tools_of(label):
            if allowed is None or spec.name in allowed:
                by_name[name] = (label, spec)
    return own or None, ServerTools(toolbox, by_name)


def _checked(tool: dict[str, Any], toolbox: Toolbox) -> str:
    label = tool.get("server_label")
    if tool.get("server_url") or tool.get("connector_id"):
        raise InvalidInputError("deskai connects only to the MCP servers it was started with "
                                "(--mcp); name one by server_label", param="tools")
    if tool.get("require_approval") not in (None, "never"):
        raise InvalidInputError('deskai runs server MCP tools without approval: set '
                                '"require_approval": "never"', param="tools")
    if label not in toolbox.sources():
        raise InvalidInputError(f"no MCP server labelled {label!r}; this server runs "
                                f"{', '.join(toolbox.sources()) or 'none'}", param="tools")
    return str(label)


def _json_object(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        raise ValueError("the arguments are not JSON") from None
    if not isinstance(value, dict):
        raise ValueError("the arguments must be a JSON object")
    return value

"""MCP servers as tool sources, through the official SDK (``mcp``): stdio or streamable HTTP.

``open_toolbox`` is the one call a caller needs: the servers of an ``mcpServers`` file (and any
other sources, such as deskai's built-in tools) connected, initialized and listed, as one
``Toolbox``. A server that cannot start or answer is a one-line ``DeskaiError`` naming it,
with the last line it wrote to stderr when it wrote one.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO, cast

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from deskai import __version__
from deskai.agents.servers import HttpServer, ServerConfig, StdioServer
from deskai.agents.toolbox import (
    DEFAULT_CALL_TIMEOUT,
    Toolbox,
    ToolResult,
    ToolSource,
    ToolSpec,
    describe_error,
    first_leaf,
)
from deskai.errors import DeskaiError

DEFAULT_CONNECT_TIMEOUT = 30.0  # an npx/uvx server may download itself on first start
_CLIENT_INFO = types.Implementation(name="deskai", version=__version__)


@dataclass(frozen=True, slots=True)
class McpSource:
    """One connected MCP server and the tools it listed."""

    name: str
    session: ClientSession
    tools: list[ToolSpec]

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        return result_text(await self.session.call_tool(tool, arguments))


def open_toolbox(servers: Sequence[ServerConfig],
                 others: Sequence[AbstractAsyncContextManager[ToolSource]] = (), *,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Toolbox:
    """A Toolbox over ``servers`` and ``others`` (enter it to connect them)."""
    sources = [*others, *(connect(server, timeout=connect_timeout) for server in servers)]
    return Toolbox(sources, call_timeout=call_timeout)


@asynccontextmanager
async def connect(server: ServerConfig, *,
                  timeout: float = DEFAULT_CONNECT_TIMEOUT) -> AsyncIterator[McpSource]:
    """``server`` connected and its tools listed, for the duration of the block."""
    # a server's stderr is kept aside (not mixed into the agent's output) to explain a failure
    with cast(TextIO, tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")) as errlog:
        connected = False
        try:
            # a transport's background task that fails cancels this one, and its task group
            # raises the real error as it exits: the failure is read outside the stack
            async with AsyncExitStack() as stack:
                session = await _session(stack, server, errlog)
                with anyio.fail_after(timeout):
                    await session.initialize()
                    tools = await _list_tools(session)
                connected = True
                yield McpSource(server.name, session, tools)
        except Exception as exc:
            if connected:
                raise
            raise _failed(server, exc, errlog, timeout) from None


async def _session(stack: AsyncExitStack, server: ServerConfig,
                   errlog: TextIO) -> ClientSession:
    if isinstance(server, StdioServer):
        parameters = StdioServerParameters(command=server.command, args=list(server.args),
                                           env=server.env or None, cwd=server.cwd)
        read, write = await stack.enter_async_context(stdio_client(parameters, errlog=errlog))
    else:
        http = await stack.enter_async_context(_http_client(server))
        read, write, _ = await stack.enter_async_context(
            streamable_http_client(server.url, http_client=http))
    return await stack.enter_async_context(
        ClientSession(read, write, client_info=_CLIENT_INFO))


def _http_client(server: HttpServer) -> httpx.AsyncClient:
    # the SDK's own timeouts: a response stream may stay open between events for minutes
    return httpx.AsyncClient(headers=server.headers,
                             timeout=httpx.Timeout(30.0, read=300.0))


async def _list_tools(session: ClientSession) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    cursor: str | None = None
    while True:
        listed = await session.list_tools(
            params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        specs.extend(ToolSpec(tool.name, tool.description or tool.title or "",
                              tool.inputSchema) for tool in listed.tools)
        cursor = listed.nextCursor
        if not cursor:
            return specs


def _failed(server: ServerConfig, exc: Exception, errlog: TextIO,
            timeout: float) -> DeskaiError:
    leaf = first_leaf(exc)
    if isinstance(leaf, TimeoutError):
        why = f"no answer within {timeout:g} s"
    elif isinstance(leaf, FileNotFoundError) and isinstance(server, StdioServer):
        why = f"no such command {server.command!r}"
    else:
        why = describe_error(leaf)
    said = _last_line(errlog)
    return DeskaiError(f"MCP server {server.name!r} did not start: {why}"
                       + (f" (its stderr: {said})" if said else ""))


def _last_line(errlog: TextIO) -> str:
    errlog.flush()
    errlog.seek(0)
    lines = [line.strip() for line in errlog.read()[-4096:].splitlines() if line.strip()]
    return lines[-1] if lines else ""


def result_text(result: types.CallToolResult) -> ToolResult:
    """A tool result as the text a model reads (images and binary data named, not inlined)."""
    parts = [_content_text(block) for block in result.content]
    if not parts and result.structuredContent is not None:
        parts = [json.dumps(result.structuredContent, ensure_ascii=False)]
    return ToolResult("\n".join(parts), is_error=result.isError)


def _content_text(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return f"[{block.type}: {block.mimeType}, {len(block.data) * 3 // 4} bytes]"
    if isinstance(block, types.ResourceLink):
        return f"[resource: {block.uri}]"
    resource = block.resource
    if isinstance(resource, types.TextResourceContents):
        return resource.text
    return f"[resource: {resource.uri} ({resource.mimeType or 'binary'})]"

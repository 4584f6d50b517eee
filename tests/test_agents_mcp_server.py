"""deskai as an MCP server, driven by the SDK's own client: ``deskai mcp`` over stdio with the
real model, and ``/mcp`` under the served app (over the fake engine, behind the same guard)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from agents_support import run
from conftest import FAKE_MODEL, REAL_MODEL, fake_serving
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from deskai.server.app import ServerSettings

TOOLS = {"list_models", "show", "fit", "generate", "chat", "embed"}


def _text(result: Any) -> str:
    return "".join(block.text for block in result.content)


def test_deskai_mcp_over_stdio(shared_home: Path) -> None:
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "deskai", "mcp", "--threads", "2", "--context",
                                      "1024"],
        env={"DESKAI_HOME": str(shared_home), "PATH": os.environ.get("PATH", "")})

    async def main() -> dict[str, Any]:
        async with stdio_client(parameters) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            return {
                "tools": {tool.name: tool for tool in listed.tools},
                "models": await session.call_tool("list_models", {}),
                "show": await session.call_tool("show", {"model": REAL_MODEL}),
                "fit": await session.call_tool("fit", {"model": "llama3-8b", "on": "dgx-spark"}),
                "fit_path": await session.call_tool("fit", {"model": "/etc/passwd"}),
                "generate": await session.call_tool("generate", {
                    "prompt": "1, 2, 3, 4, 5,", "model": REAL_MODEL, "max_tokens": 8}),
                "chat": await session.call_tool("chat", {
                    "messages": [{"role": "user", "content": "Say hello."}],
                    "model": REAL_MODEL, "max_tokens": 4}),
                "unknown": await session.call_tool("generate", {"prompt": "hi",
                                                                "model": "nope:1"}),
            }

    got = run(main())
    assert set(got["tools"]) == TOOLS
    assert got["tools"]["generate"].inputSchema["required"] == ["prompt"]
    assert REAL_MODEL in _text(got["models"])
    assert json.loads(_text(got["show"]))["architecture"] == "gemma3"
    fit = got["fit"].structuredContent
    assert fit["model"] == "llama3-8b" and fit["hardware"] == "gb10" and fit["fits"] is True
    assert got["fit_path"].isError and "unknown model '/etc/passwd'" in _text(got["fit_path"])
    assert not got["generate"].isError and _text(got["generate"]).startswith(" 6, 7")
    assert not got["chat"].isError and _text(got["chat"])
    assert got["unknown"].isError and "nope:1" in _text(got["unknown"])


@asynccontextmanager
async def _session(url: str, headers: dict[str, str] | None = None
                   ) -> AsyncIterator[ClientSession]:
    async with httpx.AsyncClient(headers=headers, timeout=30) as http, \
            streamable_http_client(url, http_client=http) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def test_mcp_under_the_served_app(tmp_path: Path) -> None:
    with fake_serving(tmp_path / "home") as (server, backend):
        async def main() -> dict[str, Any]:
            async with _session(f"{server.url}/mcp") as session:
                listed = await session.list_tools()
                return {
                    "tools": {tool.name for tool in listed.tools},
                    "models": await session.call_tool("list_models", {}),
                    "generate": await session.call_tool("generate", {
                        "prompt": "echo me", "model": FAKE_MODEL, "max_tokens": 7}),
                    "chat": await session.call_tool("chat", {
                        "messages": [{"role": "user", "content": "hi"}], "model": FAKE_MODEL}),
                    "embed": await session.call_tool("embed", {"input": "x",
                                                               "model": FAKE_MODEL}),
                }

        got = run(main())
        assert got["tools"] == TOOLS
        assert json.loads(_text(got["models"]))["name"] == FAKE_MODEL
        assert _text(got["generate"]) == "echo me"  # the fake engine echoes its prompt
        assert "User: hi" in _text(got["chat"])  # the chat format reached the engine
        assert got["embed"].isError and "embedding model" in _text(got["embed"])
        # one model manager for both APIs: the MCP call loaded the app's model
        assert httpx.get(f"{server.url}/health").json()["loaded_models"] == [FAKE_MODEL]
        assert "/mcp" not in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_mcp_stays_behind_the_site_guard_and_the_key(tmp_path: Path) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    settings = ServerSettings(api_key="sesame")
    with fake_serving(tmp_path / "home", settings) as (server, _):
        url = f"{server.url}/mcp"
        rebound = httpx.post(url, json=initialize, headers={**headers, "Host": "evil.example",
                                                             "Authorization": "Bearer sesame"})
        assert rebound.status_code == 403 and "host" in rebound.json()["error"]["message"]
        cross_site = httpx.post(url, json=initialize, headers={
            **headers, "Origin": "https://evil.example", "Authorization": "Bearer sesame"})
        assert cross_site.status_code == 403
        assert httpx.post(url, json=initialize, headers=headers).status_code == 401

        async def with_the_key() -> set[str]:
            async with _session(url, {"Authorization": "Bearer sesame"}) as session:
                return {tool.name for tool in (await session.list_tools()).tools}

        assert run(with_the_key()) == TOOLS


@pytest.mark.parametrize(("method", "accept", "status"), [
    ("DELETE", "application/json, text/event-stream", 405),  # stateless: no session to end
    ("GET", "application/json", 406),  # a GET is only ever an event stream
])
def test_mcp_answers_other_requests_as_the_sdk_does(tmp_path: Path, method: str, accept: str,
                                                    status: int) -> None:
    with fake_serving(tmp_path / "home") as (server, _):
        reply = httpx.request(method, f"{server.url}/mcp", headers={"Accept": accept})
        assert reply.status_code == status

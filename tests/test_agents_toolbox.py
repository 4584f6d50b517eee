"""The MCP client side: ``mcpServers`` files checked, servers connected with the SDK, and a
Toolbox whose calls never raise — whatever the tool does."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agents_support import calc_server, run

from deskai.agents.builtin import builtin_source
from deskai.agents.mcp_client import open_toolbox
from deskai.agents.servers import HttpServer, StdioServer, load_servers, parse_servers
from deskai.engine.protocol import EngineOptions
from deskai.errors import DeskaiError, InvalidInputError
from deskai.store import Store


def test_the_hosts_format_parses_both_transports() -> None:
    servers = parse_servers({"mcpServers": {
        "calc": {"command": "python", "args": ["calc.py"], "env": {"K": "v"}, "disabled": False},
        "web": {"type": "http", "url": "https://example.com/mcp",
                "headers": {"Authorization": "Bearer x"}},
    }})
    assert servers == [StdioServer("calc", "python", ("calc.py",), {"K": "v"}),
                       HttpServer("web", "https://example.com/mcp", {"Authorization": "Bearer x"})]


@pytest.mark.parametrize(("document", "needle"), [
    ([], "mcpServers"),
    ({"servers": {}}, "mcpServers"),
    ({"mcpServers": {"a": "python"}}, "mcpServers.a must be an object"),
    ({"mcpServers": {"a": {}}}, "either a command"),
    ({"mcpServers": {"a": {"command": "x", "url": "http://h/mcp"}}}, "not both"),
    ({"mcpServers": {"a": {"command": ""}}}, "a.command must be a non-empty string"),
    ({"mcpServers": {"a": {"command": "x", "args": "--flag"}}}, "a.args must be a list"),
    ({"mcpServers": {"a": {"command": "x", "args": [1]}}}, "a.args must be a list"),
    ({"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}, "a.env must be an object"),
    ({"mcpServers": {"a": {"url": "ftp://h/mcp"}}}, "http:// or https://"),
    ({"mcpServers": {"a": {"url": "http://h", "headers": []}}}, "a.headers"),
    ({"mcpServers": {"a": {"type": "sse", "url": "http://h/sse"}}}, "SSE servers"),
    ({"mcpServers": {"a": {"type": "stdio", "url": "http://h/mcp"}}}, "gives a url"),
    ({"mcpServers": {" ": {"command": "x"}}}, "name is empty"),
])
def test_a_bad_file_is_one_line_naming_the_server(document: Any, needle: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_servers(document, source="servers.json")
    message = str(caught.value)
    assert needle in message and message.startswith("servers.json") and "\n" not in message


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        load_servers(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"mcpServers": {')
    with pytest.raises(InvalidInputError, match=r"not JSON: .* at line 1"):
        load_servers(broken)


def test_tools_are_listed_in_openai_shape_and_clashes_get_the_server_prefix(
        tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"

    async def main() -> tuple[list[dict[str, Any]], Any]:
        servers = [calc_server(record, "add", "explode"), calc_server(record, "add", name="calc 2")]
        async with open_toolbox(servers, [builtin_source(["fit"])]) as toolbox:
            return toolbox.tools(), await toolbox.call("calc_2__add", {"a": 2, "b": 40})

    tools, result = run(main())
    names = sorted(tool["function"]["name"] for tool in tools)
    assert names == ["calc_2__add", "calc__add", "explode", "fit"]
    add = next(tool for tool in tools if tool["function"]["name"] == "calc__add")
    assert add["type"] == "function" and add["function"]["description"] == "Add two integers."
    assert add["function"]["parameters"]["required"] == ["a", "b"]
    assert result.text == "SUM-IS 42" and not result.is_error
    assert json.loads(record.read_text()) == {"tool": "add", "a": 2, "b": 40}


def test_a_call_never_raises(tmp_path: Path) -> None:
    """A tool that raises, one that hangs past the timeout, bad arguments, an unknown name:
    each is an error result, and the toolbox (and its server) still close at once."""

    async def main() -> tuple[dict[str, Any], float]:
        async with open_toolbox([calc_server(tmp_path / "record.jsonl")],
                                call_timeout=1.0) as toolbox:
            started = time.monotonic()
            results = {
                "raises": await toolbox.call("explode", {"code": 7}),
                "hangs": await toolbox.call("hang", {}),
                "bad arguments": await toolbox.call("add", {"a": "two", "b": 3}),
                "unknown": await toolbox.call("subtract", {}),
                "after all that": await toolbox.call("add", {"a": 1, "b": 1}),
            }
            assert time.monotonic() - started < 5
        return results, time.monotonic() - started

    results, took = run(main())
    assert results["raises"].is_error and "exploded on purpose (7)" in results["raises"].text
    assert results["hangs"].is_error and "did not finish within 1 s" in results["hangs"].text
    assert results["bad arguments"].is_error and "valid integer" in results["bad arguments"].text
    assert results["unknown"].is_error and "no tool named 'subtract'" in results["unknown"].text
    assert results["after all that"].text == "SUM-IS 2"
    assert took < 8  # closing waits for no hung call


@pytest.mark.parametrize(("entry", "needle"), [
    ({"command": "deskai-no-such-command"}, "no such command 'deskai-no-such-command'"),
    ({"command": sys.executable, "args": ["-c", "import sys; sys.exit('bad token in config')"]},
     "its stderr: bad token in config"),
    ({"url": "http://127.0.0.1:9/mcp"}, "did not start"),
])
def test_a_server_that_cannot_start_is_one_line_naming_it(entry: dict[str, Any],
                                                          needle: str) -> None:
    async def main() -> None:
        async with open_toolbox(parse_servers({"mcpServers": {"broken": entry}})):
            pass

    with pytest.raises(DeskaiError) as caught:
        run(main())
    message = str(caught.value)
    assert "MCP server 'broken'" in message and needle in message and "\n" not in message


def test_a_server_that_never_answers_is_given_up(tmp_path: Path) -> None:
    silent = {"command": sys.executable, "args": ["-c", "import time; time.sleep(60)"]}

    async def main() -> None:
        async with open_toolbox(parse_servers({"mcpServers": {"silent": silent}}),
                                connect_timeout=1.0):
            pass

    started = time.monotonic()
    with pytest.raises(DeskaiError, match="'silent' did not start: no answer within 1 s"):
        run(main())
    assert time.monotonic() - started < 10


def test_deskais_own_tools_have_schemas_a_grammar_enforces(tmp_path: Path) -> None:
    """deskai refuses tools whose schema its grammar cannot enforce (minimum, nested $defs):
    its own tools, built-in and MCP, must never be among them."""
    from mcp.server.fastmcp import FastMCP

    from deskai.agents.mcp_server import build_server
    from deskai.engine.llamacpp.grammar import schema_to_grammar
    from deskai.frontend.tools import calls_schema, parse_tools
    from deskai.runtime.manager import ModelManager

    async def builtin_tools() -> list[dict[str, Any]]:
        spec = builtin_source(["python", "fit", f"files={tmp_path}"])
        async with open_toolbox([], [spec]) as toolbox:
            return toolbox.tools()

    async def server_tools(server: FastMCP) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": tool.name,
                                                  "parameters": tool.inputSchema}}
                for tool in await server.list_tools()]

    manager = ModelManager(Store(tmp_path / "home"), EngineOptions(), keep_alive=-1,
                           fit_check=None)
    try:
        server = build_server(manager, manager.store)
        for tools in (run(builtin_tools()), run(server_tools(server))):
            schema_to_grammar(calls_schema(parse_tools(tools), parallel=True), param="tools")
    finally:
        manager.close()

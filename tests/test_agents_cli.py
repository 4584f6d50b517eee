"""``deskai agent`` as a user types it: bad input is one line and exit 2; a run with the real
model prints its steps, and writes them as JSON lines, in-process or through a server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from agents_support import calc_entry
from conftest import REAL_MODEL, ServerProcess, deskai_command

FORCED = ["--tool-choice", "required", "--one-call", "--max-steps", "2", "--max-tokens", "32"]


def agent_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*deskai_command(), "agent", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "DESKAI_HOME": str(home)})


def servers_file(tmp_path: Path, servers: Any) -> Path:
    path = tmp_path / "servers.json"
    path.write_text(servers if isinstance(servers, str) else json.dumps(servers))
    return path


def assert_one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(("servers", "needle"), [
    ('{"mcpServers": {"calc": ', "not JSON"),
    ({"mcpServers": {"calc": {"args": ["x"]}}}, "mcpServers.calc needs either a command"),
    ({"mcpServers": {"calc": {"type": "sse", "url": "http://127.0.0.1:1/sse"}}}, "SSE"),
    ({"mcpServers": {"calc": {"command": "deskai-no-such-server"}}},
     "MCP server 'calc' did not start: no such command"),
    ({"mcpServers": {"calc": {"command": "python3", "args": ["-c", "print('not json')"]}}},
     "MCP server 'calc' did not start"),
])
def test_a_bad_servers_file_is_one_line_and_exit_2(deskai_home: Path, tmp_path: Path,
                                                   servers: Any, needle: str) -> None:
    done = agent_cli(deskai_home, "any-model", "a task", "--mcp",
                     str(servers_file(tmp_path, servers)))
    assert_one_line_error(done, needle)


@pytest.mark.parametrize(("args", "needle"), [
    (["--mcp", "/nonexistent/servers.json"], "no such file"),
    (["--tool", "shell"], "unknown built-in tool 'shell'"),
    (["--tool", "files=/nonexistent-dir"], "is not a directory"),
    (["--tool-choice", "required"], "needs a tool"),
    (["--tool", "fit", "--jsonl", "/nonexistent-dir/events.jsonl"], "--jsonl"),
    (["--tool", "fit", "--local"], "nope:1"),  # the model is looked up after the tools start
])
def test_bad_arguments_are_one_line_and_exit_2(deskai_home: Path, args: list[str],
                                               needle: str) -> None:
    assert_one_line_error(agent_cli(deskai_home, "nope:1", "a task", *args), needle)


def test_an_unknown_tool_choice_is_a_usage_error(deskai_home: Path) -> None:
    done = agent_cli(deskai_home, "m", "t", "--tool-choice", "sometimes")
    assert done.returncode == 2 and "Usage:" in done.stderr and "Traceback" not in done.stderr


def test_agent_in_process_prints_each_step_and_writes_json_lines(
        shared_home: Path, tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    servers = servers_file(tmp_path, {"mcpServers": {"calc": calc_entry(record, "add")}})
    done = agent_cli(shared_home, REAL_MODEL, "What is 2 + 3? Use the add tool.", "--mcp",
                     str(servers), *FORCED, "--jsonl", "-", "--local", "--threads", "2",
                     "--context", "1024")
    assert done.returncode in (0, 1), done.stderr  # answered, or the steps ran out
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["kind"] == "call" and events[0]["name"] == "add"
    assert events[1]["kind"] == "result" and events[1]["text"].startswith("SUM-IS")
    assert set(events[0]) == {"step", "kind", "name", "arguments", "text"}
    assert record.read_text().count('"tool": "add"') >= 1
    assert "step 1 → add" in done.stderr and "SUM-IS" in done.stderr  # the steps shown


def test_agent_through_a_running_server(server: ServerProcess, shared_home: Path,
                                        tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    servers = servers_file(tmp_path, {"mcpServers": {"calc": calc_entry(record, "add")}})
    events_file = tmp_path / "events.jsonl"
    done = agent_cli(shared_home, REAL_MODEL, "What is 2 + 3? Use the add tool.", "--mcp",
                     str(servers), *FORCED, "--jsonl", str(events_file), "--url", server.url)
    assert done.returncode in (0, 1), done.stderr
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [e["kind"] for e in events[:2]] == ["call", "result"] and record.exists()
    assert "POST /v1/chat/completions 200" in server.log()

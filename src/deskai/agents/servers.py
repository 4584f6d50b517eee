"""The ``mcpServers`` file that Claude Desktop, Cursor and llama-server read, checked once.

::

    {"mcpServers": {
        "calc":   {"command": "python", "args": ["calc.py"], "env": {"KEY": "value"}},
        "search": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer x"}}
    }}

A server is a command to start (stdio) or the URL of a streamable-HTTP endpoint. Keys other
hosts add (``disabled``, ``autoApprove``, ...) are ignored so that their files load as they
are; the keys deskai uses are checked, and a bad one is a one-line ``InvalidInputError`` that
names the file and the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deskai.errors import InvalidInputError

# the "type" values hosts write for each transport (Claude Code, Cursor, VS Code spellings)
_STDIO_TYPES = frozenset({"stdio"})
_HTTP_TYPES = frozenset({"http", "streamable-http", "streamable_http", "streamableHttp"})


@dataclass(frozen=True, slots=True)
class StdioServer:
    """A server deskai starts and talks to over its stdin and stdout."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass(frozen=True, slots=True)
class HttpServer:
    """A server already running behind a streamable-HTTP endpoint."""

    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


ServerConfig = StdioServer | HttpServer


def load_servers(path: Path) -> list[ServerConfig]:
    """The servers of an ``mcpServers`` JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read it ({exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}, "
                                f"column {exc.colno}") from None
    return parse_servers(document, source=str(path))


def parse_servers(document: Any, *, source: str = "servers") -> list[ServerConfig]:
    """The servers of an already parsed ``{"mcpServers": {...}}`` document."""
    if not isinstance(document, dict) or not isinstance(document.get("mcpServers"), dict):
        raise InvalidInputError(f'{source}: expected an object {{"mcpServers": {{"NAME": '
                                '{"command": ...} or {"url": ...}}}')
    servers = []
    for name, entry in document["mcpServers"].items():
        where = f"{source}: mcpServers.{name}"
        if not name.strip():
            raise InvalidInputError(f"{source}: a server name is empty")
        if not isinstance(entry, dict):
            raise InvalidInputError(f"{where} must be an object with a command or a url")
        servers.append(_server(name, entry, where))
    return servers


def _server(name: str, entry: dict[str, Any], where: str) -> ServerConfig:
    kind = entry.get("type")
    if kind is not None and kind not in _STDIO_TYPES | _HTTP_TYPES:
        hint = " (SSE servers are not supported; use their streamable-HTTP URL)" \
            if kind == "sse" else ""
        raise InvalidInputError(f"{where}.type is {kind!r}; deskai speaks 'stdio' and "
                                f"'http'{hint}")
    has_command, has_url = "command" in entry, "url" in entry
    if has_command == has_url:
        raise InvalidInputError(f"{where} needs either a command (stdio) or a url (HTTP), "
                                "not both or neither")
    if (kind in _STDIO_TYPES and has_url) or (kind in _HTTP_TYPES and has_command):
        raise InvalidInputError(f"{where}.type is {kind!r} but it gives a "
                                f"{'url' if has_url else 'command'}")
    if has_command:
        return StdioServer(name, _text(entry["command"], f"{where}.command"),
                           tuple(_strings(entry.get("args", []), f"{where}.args")),
                           _mapping(entry.get("env", {}), f"{where}.env"),
                           _text(entry["cwd"], f"{where}.cwd") if "cwd" in entry else None)
    url = _text(entry["url"], f"{where}.url")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise InvalidInputError(f"{where}.url must be an http:// or https:// address, "
                                f"got {url!r}")
    return HttpServer(name, url, _mapping(entry.get("headers", {}), f"{where}.headers"))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{where} must be a non-empty string")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInputError(f"{where} must be a list of strings")
    return value


def _mapping(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInputError(f"{where} must be an object of strings")
    return dict(value)

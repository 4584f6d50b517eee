"""Shared by the agent tests: the test MCP server as a config entry, and running async code."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from deskai.agents.servers import StdioServer

CALC_SERVER = Path(__file__).parent / "agents_calc_server.py"
T = TypeVar("T")


def calc_server(record: Path, *tools: str, name: str = "calc") -> StdioServer:
    """``agents_calc_server.py`` serving ``tools`` (all when none), recording into ``record``."""
    return StdioServer(name, sys.executable, (str(CALC_SERVER), str(record), *tools))


def calc_entry(record: Path, *tools: str) -> dict[str, Any]:
    """The same server as an ``mcpServers`` entry."""
    return {"command": sys.executable, "args": [str(CALC_SERVER), str(record), *tools]}


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)

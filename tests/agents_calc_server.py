"""An MCP server for the agent tests, written with the SDK and run as a stdio subprocess:

    python agents_calc_server.py RECORD [TOOL ...]

It serves the TOOLs named (default: all) — ``add`` (which appends each call to the file
RECORD, so a test sees that it really ran), ``explode`` (raises) and ``hang`` (never returns).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
from mcp.server.fastmcp import FastMCP

RECORD = Path(sys.argv[1])
WANTED = set(sys.argv[2:]) or {"add", "explode", "hang"}
SUM_MARK = "SUM-IS"  # in add's result, so a test can find that result in the next prompt

server = FastMCP("calc", log_level="WARNING")


def add(a: int, b: int) -> str:
    """Add two integers."""
    with RECORD.open("a") as record:
        record.write(json.dumps({"tool": "add", "a": a, "b": b}) + "\n")
    return f"{SUM_MARK} {a + b}"


def explode(code: int) -> str:
    """Do something that always fails."""
    raise RuntimeError(f"exploded on purpose ({code})")


async def hang() -> str:
    """Wait for something that never comes."""
    await anyio.sleep_forever()
    return "unreachable"


for tool in (add, explode, hang):
    if tool.__name__ in WANTED:
        server.add_tool(tool)

if __name__ == "__main__":
    server.run("stdio")

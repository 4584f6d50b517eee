"""deskai's own tools for agents, each one opt-in: ``--tool python``, ``--tool files=DIR``,
``--tool fit``. They are a tool source like any MCP server, so a Toolbox mixes them freely.

* ``python`` runs a script in the sandbox (``sandbox.run_python``): no network, no sockets, no
  files but its own directory, CPU, memory and wall-clock limits;
* ``files=DIR`` reads, writes and lists files beneath DIR and nowhere else (``files``);
* ``fit`` asks the planner whether a model fits this machine (or a catalog system).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from deskai.agents.files import ConfinedFiles
from deskai.agents.planning import fit_report
from deskai.agents.sandbox import Limits, check_sandbox, run_python
from deskai.agents.toolbox import ToolResult, ToolSource, ToolSpec
from deskai.errors import InvalidInputError

SOURCE_NAME = "deskai"
TOOL_SPECS_HELP = "python, files=DIR, fit"


@dataclass(frozen=True, slots=True)
class BuiltinTool:
    spec: ToolSpec
    run: Callable[[dict[str, Any]], ToolResult]  # blocking; it runs on a worker thread


class BuiltinSource:
    """The built-in tools that were asked for, as one tool source."""

    name = SOURCE_NAME

    def __init__(self, tools: list[BuiltinTool]) -> None:
        self._tools = {tool.spec.name: tool for tool in tools}

    @property
    def tools(self) -> list[ToolSpec]:
        return [tool.spec for tool in self._tools.values()]

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        # abandoned on the Toolbox's timeout; each tool bounds its own work (the sandbox's
        # wall clock, the file size limits) so the thread ends soon after
        return await anyio.to_thread.run_sync(self._tools[tool].run, arguments,
                                              abandon_on_cancel=True)


def builtin_source(specs: list[str]) -> AbstractAsyncContextManager[ToolSource]:
    """The tools ``specs`` name (``python``, ``files=DIR``, ``fit``), as a source to open."""
    tools: list[BuiltinTool] = []
    for spec in specs:
        kind, _, value = spec.partition("=")
        if kind == "python" and not value:
            tools.append(python_tool())
        elif kind == "files" and value:
            tools.extend(file_tools(ConfinedFiles(Path(value))))
        elif kind == "fit" and not value:
            tools.append(fit_tool())
        else:
            raise InvalidInputError(f"unknown built-in tool {spec!r}; they are "
                                    f"{TOOL_SPECS_HELP}", param="tool")
    names = [tool.spec.name for tool in tools]
    if len(set(names)) != len(names):
        raise InvalidInputError("each built-in tool may be asked for once", param="tool")
    return nullcontext(BuiltinSource(tools))


def python_tool(limits: Limits = Limits()) -> BuiltinTool:
    check_sandbox()  # a system that cannot sandbox the code says so before the agent starts

    def run(arguments: dict[str, Any]) -> ToolResult:
        outcome = run_python(_text(arguments, "code"), limits)
        return ToolResult(outcome.describe(), is_error=outcome.returncode != 0)

    description = (
        "Run a Python 3 script and return what it prints (stdout, then stderr). Each call "
        "starts afresh in an empty directory it may write to; it has no network and no other "
        f"files, at most {limits.cpu_seconds} s of CPU, {limits.wall_seconds:g} s in all and "
        f"{limits.memory_bytes >> 20} MiB of memory. Print the results you need.")
    return BuiltinTool(ToolSpec("python", description, _schema(
        {"code": {"type": "string", "description": "The script to run."}})), run)


def file_tools(files: ConfinedFiles) -> list[BuiltinTool]:
    where = "Paths are relative to the working directory; nothing outside it can be reached."

    def read(arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(files.read(_text(arguments, "path")))

    def write(arguments: dict[str, Any]) -> ToolResult:
        path = _text(arguments, "path")
        written = files.write(path, _text(arguments, "content", empty=True))
        return ToolResult(f"wrote {written} bytes to {path}")

    def listing(arguments: dict[str, Any]) -> ToolResult:
        entries = files.list(_text(arguments, "path") if "path" in arguments else ".")
        lines = [f"{e.name}/" if e.kind == "dir" else f"{e.name} ({e.size} bytes)"
                 if e.kind == "file" else f"{e.name} ({e.kind})" for e in entries]
        return ToolResult("\n".join(lines) or "(empty)")

    path = {"type": "string", "description": "A relative path, such as notes/todo.txt."}
    return [
        BuiltinTool(ToolSpec("read_file", f"Read a text file. {where}",
                             _schema({"path": path})), read),
        BuiltinTool(ToolSpec("write_file", "Write a text file (replacing it, making its "
                             f"directories). {where}",
                             _schema({"path": path, "content": {"type": "string"}})), write),
        BuiltinTool(ToolSpec("list_files", f"List a directory (default: the working one). "
                             f"{where}", _schema({"path": path}, required=())), listing),
    ]


def fit_tool() -> BuiltinTool:
    def run(arguments: dict[str, Any]) -> ToolResult:
        report = fit_report(_text(arguments, "model"), on=arguments.get("on"),
                            context=arguments.get("context"), quant=arguments.get("quant"),
                            batch=arguments.get("batch", 1))
        return ToolResult(json.dumps(report))

    description = ("Will a model fit in memory, with which quantization and context, and how "
                   "fast will it run? On this machine, or on a catalog system such as "
                   "dgx-spark or h100.")
    return BuiltinTool(ToolSpec("fit", description, _schema({
        "model": {"type": "string", "description": "A catalog model (llama3-8b) or a model "
                  "in the store (gemma3:270m)."},
        "on": {"type": "string", "description": "Hardware from the catalog."},
        # no "minimum": no grammar enforces it, and the planner refuses what is not positive
        "context": {"type": "integer", "description": "Tokens per sequence."},
        "quant": {"type": "string", "description": "Weight format, such as q4_k_m."},
        "batch": {"type": "integer", "description": "Parallel sequences."},
    }, required=("model",))), run)


def _schema(properties: dict[str, Any],
            required: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required),
            "additionalProperties": False}


def _text(arguments: dict[str, Any], key: str, *, empty: bool = False) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or (not empty and not value):
        raise InvalidInputError(f"{key!r} must be a{'' if empty else ' non-empty'} string")
    return value

"""Every tool an agent may call — MCP servers' and deskai's built-in ones — behind one interface.

A ``Toolbox`` opens its sources (each an async context manager giving a ``ToolSource``), lists
their tools in OpenAI's function-tool shape, and runs a call by name. A call never raises: a
tool that fails, reports an error, or outlives the per-call timeout gives an error
``ToolResult``, which the model reads like any other result. Nothing here knows the CLI, so the
HTTP server can hold a Toolbox for its own requests as well.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import anyio

from deskai.errors import InvalidInputError
from deskai.frontend.tools import Tool

DEFAULT_CALL_TIMEOUT = 60.0
# what one result may add to the conversation; a small model's context is a few thousand tokens
DEFAULT_MAX_RESULT_CHARS = 16_000


ToolSpec = Tool
"""One tool as its source describes it (the frontend's ``Tool``: the same three facts)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call gave back, as the text the model reads; ``is_error`` when it failed."""

    text: str
    is_error: bool = False


class ToolSource(Protocol):
    """Tools behind one name (an MCP server, deskai's built-ins), ready to be called.

    ``call`` may raise; the Toolbox turns that into an error result."""

    @property
    def name(self) -> str: ...

    @property
    def tools(self) -> list[ToolSpec]: ...

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult: ...


class Toolbox:
    """The tools of several sources under unique names: a tool keeps its own name unless
    another source has one of the same name, then both get their source's name as a prefix
    (``calc__add``)."""

    def __init__(self, sources: Sequence[AbstractAsyncContextManager[ToolSource]], *,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT,
                 max_result_chars: int = DEFAULT_MAX_RESULT_CHARS) -> None:
        self._openers = list(sources)
        self.call_timeout = call_timeout
        self.max_result_chars = max_result_chars
        self._stack = AsyncExitStack()
        self._table: dict[str, tuple[ToolSource, ToolSpec]] = {}

    async def __aenter__(self) -> Toolbox:
        try:
            # one after another, in this task: the SDK's transports must close in the task
            # (and the order) that opened them
            sources = [await self._stack.enter_async_context(opener) for opener in self._openers]
            self._table = expose(sources)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self._stack.aclose()

    def names(self) -> list[str]:
        return list(self._table)

    def sources(self) -> list[str]:
        """The names of the sources (MCP servers, ``builtin``) the tools come from."""
        return list(dict.fromkeys(source.name for source, _ in self._table.values()))

    def tools_of(self, source: str) -> list[tuple[str, ToolSpec]]:
        """One source's tools: the name ``call`` takes, and the tool as its source has it."""
        return [(name, spec) for name, (owner, spec) in self._table.items()
                if owner.name == source]

    def tools(self) -> list[dict[str, Any]]:
        """Every tool in OpenAI's function-tool shape, under the name ``call`` takes."""
        return [spec.function(name) for name, (_, spec) in self._table.items()]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Run tool ``name``; every failure is an error result, never an exception."""
        found = self._table.get(name)
        if found is None:
            return ToolResult(f"there is no tool named {name!r}; the tools are "
                              f"{', '.join(self._table) or 'none'}", is_error=True)
        if not isinstance(arguments, dict):
            return ToolResult(f"{name}: the arguments must be a JSON object", is_error=True)
        source, spec = found
        try:
            with anyio.move_on_after(self.call_timeout) as scope:
                result = await source.call(spec.name, arguments)
        except Exception as exc:  # the tool's failure is the model's to read, not the agent's end
            return ToolResult(f"{name} failed: {describe_error(exc)}", is_error=True)
        if scope.cancelled_caught:
            return ToolResult(f"{name} did not finish within {self.call_timeout:g} s and was "
                              "abandoned", is_error=True)
        return self._capped(result)

    def _capped(self, result: ToolResult) -> ToolResult:
        if len(result.text) <= self.max_result_chars:
            return result
        cut = len(result.text) - self.max_result_chars
        return ToolResult(f"{result.text[:self.max_result_chars]}\n[... {cut} more characters "
                          "cut]", result.is_error)


def expose(sources: Sequence[ToolSource]) -> dict[str, tuple[ToolSource, ToolSpec]]:
    """The name each tool is called by; names two sources share get their source's prefix."""
    counts = Counter(spec.name for source in sources for spec in source.tools)
    table: dict[str, tuple[ToolSource, ToolSpec]] = {}
    for source in sources:
        for spec in source.tools:
            name = spec.name if counts[spec.name] == 1 else f"{prefix(source.name)}__{spec.name}"
            if name in table:
                raise InvalidInputError(f"two tools would both be called {name!r} (server "
                                        f"{table[name][0].name!r} and {source.name!r}); "
                                        "rename one of the servers")
            table[name] = (source, spec)
    return table


def prefix(server_name: str) -> str:
    """A server's name as part of a function name (OpenAI allows ``[A-Za-z0-9_-]``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", server_name).strip("_") or "server"


def describe_error(exc: BaseException) -> str:
    """One line for an exception; an exception group is described by its first leaf."""
    leaf = first_leaf(exc)
    return " ".join(str(leaf).split()) or type(leaf).__name__


def first_leaf(exc: BaseException) -> BaseException:
    """The first exception that is not a group (anyio's task groups wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc

"""``deskai agent``: a model that calls tools — MCP servers', deskai's built-in ones — until it
answers. Every step is printed as it happens, and written as a JSON line when asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING

import typer
from rich.console import Console
from rich.text import Text

from deskai.agents.toolbox import DEFAULT_CALL_TIMEOUT
from deskai.cli._app import app, console, err_console
from deskai.cli.serving import engine_options
from deskai.errors import InvalidInputError

if TYPE_CHECKING:
    from deskai.agents.loop import AgentEvent, AgentRun

EXIT_NO_ANSWER = 1
_SHOWN_CHARS = 600  # of a result, on screen (the JSON lines carry it whole)


class ToolChoice(StrEnum):
    auto = "auto"
    required = "required"


@app.command("agent")
def agent(
    model: str = typer.Argument(..., help="Model name."),
    task: str = typer.Argument(..., help="What the agent should do."),
    mcp: Path = typer.Option(None, "--mcp", help="MCP servers to use: a JSON file of "
                             '{"mcpServers": {...}} (Claude Desktop\'s and Cursor\'s format).'),
    tool: list[str] = typer.Option(None, "--tool", help="A built-in tool (python, files=DIR, fit); "
                                   "repeatable. None is on unless named."),
    max_steps: int = typer.Option(8, "--max-steps", min=1,
                                  help="Most model turns before giving up (exit 1)."),
    tool_choice: ToolChoice = typer.Option(ToolChoice.auto, "--tool-choice",
                                           help="'required' makes the first turn call a tool."),
    parallel_calls: bool = typer.Option(True, "--parallel-calls/--one-call",
                                        help="Whether one turn may call several tools."),
    system: str = typer.Option(None, "--system", help="A system message for the model."),
    jsonl: str = typer.Option(None, "--jsonl", help="Also write every step as a JSON line to "
                              "FILE ('-': stdout, and the steps shown go to stderr)."),
    max_tokens: int = typer.Option(512, "--max-tokens", "-n", min=1,
                                   help="Most tokens per model turn."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy."),
    seed: int = typer.Option(None, help="Seed for sampling."),
    tool_timeout: float = typer.Option(DEFAULT_CALL_TIMEOUT, "--tool-timeout", min=0.001,
                                       help="Seconds a tool call may take; then it is an "
                                            "error the model reads."),
    threads: int = typer.Option(None, "--threads", "-t", min=1, help="CPU threads for "
                                "inference, in-process (default: every core)."),
    context: int = typer.Option(None, "--context", "-c", min=16,
                                help="Context length in tokens, in-process."),
    url: str = typer.Option(None, help="Server to use (default http://127.0.0.1:3375)."),
    local: bool = typer.Option(False, "--local", help="Never use a running server."),
) -> None:
    """Run TASK with MODEL calling tools until it answers (or --max-steps turns pass)."""
    import anyio

    # the agent's modules load the MCP SDK (a third of a second): only for this verb
    from deskai.agents.builtin import builtin_source
    from deskai.agents.loop import run_agent
    from deskai.agents.mcp_client import open_toolbox
    from deskai.agents.model import open_chat_model
    from deskai.agents.servers import load_servers
    from deskai.engine.sampling import SamplingParams

    servers = load_servers(mcp) if mcp is not None else []
    builtins = builtin_source(tool or [])
    if tool_choice is ToolChoice.required and not servers and not tool:
        raise InvalidInputError("--tool-choice required needs a tool: give --mcp or --tool")
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    options = engine_options(threads, context, 1)
    # the SDK logs a server's stray output with a traceback; a failure still ends in one line
    logging.getLogger("mcp").setLevel(logging.CRITICAL)

    async def main(show: _Display) -> AgentRun:
        # servers first: a bad one fails before any model loads
        async with open_toolbox(servers, [builtins], call_timeout=tool_timeout) as toolbox:
            with contextlib.ExitStack() as stack:
                chat = await anyio.to_thread.run_sync(stack.enter_context, open_chat_model(
                    model, params, options, url=url, local=local))
                return await run_agent(chat, toolbox, task, max_steps=max_steps,
                                       tool_choice=tool_choice.value,
                                       parallel_tool_calls=parallel_calls, system=system,
                                       on_event=show)

    with _jsonl_sink(jsonl) as sink:
        run = asyncio.run(main(_Display(err_console if sink is sys.stdout else console, sink)))
    if run.answer is None:
        raise typer.Exit(EXIT_NO_ANSWER)


class _Display:
    """Each event on screen (rich), and as a JSON line when a sink is given."""

    def __init__(self, screen: Console, sink: IO[str] | None) -> None:
        self.screen = screen
        self.sink = sink

    def __call__(self, event: AgentEvent) -> None:
        if self.sink is not None:
            self.sink.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            self.sink.flush()
        step = f"[dim]step {event.step}[/]"
        if event.kind == "call":
            arguments = json.dumps(event.arguments) if event.arguments is not None \
                else event.text
            self._print(f"{step} [cyan]→ {event.name}[/]", _plain(arguments or ""))
        elif event.kind == "result":
            self._print(f"{step} [green]←[/]", _plain(_short(event.text)))
        elif event.kind == "error":  # its text names the tool
            self._print(f"{step} [red]✗[/]", _plain(_short(event.text)))
        else:
            self._print(_plain(event.text or ""))

    def _print(self, *parts: object) -> None:
        self.screen.print(*parts, soft_wrap=True)  # lines as they are, never cut to 80 columns


def _plain(text: str) -> Text:
    return Text(text)  # what tools and the model write is data, never rich markup


def _short(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]} …"


@contextlib.contextmanager
def _jsonl_sink(target: str | None) -> Iterator[IO[str] | None]:
    if target is None:
        yield None
    elif target == "-":
        yield sys.stdout
    else:
        with contextlib.ExitStack() as stack:
            try:
                handle = stack.enter_context(Path(target).open("w", encoding="utf-8"))
            except OSError as exc:
                raise InvalidInputError(f"--jsonl {target}: {exc.strerror or exc}") from None
            yield handle

"""The Typer application every command module registers its verbs on, and the error boundary.

Library errors (``DeskaiError``) become one line on stderr and exit status 2; nothing a user
types should ever print a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from deskai.errors import DeskaiError

app = typer.Typer(
    name="deskai",
    help="The software of a personal AI supercomputer: hardware, models, serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

EXIT_USAGE = 2
#: Width for output that is not a terminal: wide enough that no table is ever cut.
_PIPE_WIDTH = 1 << 20


def fail(message: str) -> typer.Exit:
    """Print one line to stderr and return the exit to raise (status 2)."""
    err_console.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(EXIT_USAGE)


def print_table(table: Table) -> None:
    """Print ``table`` fitted to the terminal; piped (``| grep``), print it whole.

    Rich sizes a console that is not a terminal at 80 columns and cuts cells with "…", so a
    name grepped from ``deskai list`` would not match; piped output gets its natural width.
    """
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=_PIPE_WIDTH).print(table)


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI, mapping deskai's errors to a one-line message and exit status 2.

    Typer runs in standalone mode, so it reports its own usage errors (usage, hint, the
    error, exit 2), Ctrl-C (130) and a closed pipe. Catching its exception classes here
    instead would tie this boundary to where a Typer release keeps its Click: recent ones
    bundle their own, which the pip ``click``'s classes do not match.
    """
    try:
        app(args=argv, prog_name="deskai")
    except SystemExit as exc:  # standalone Typer always exits this way, success included
        return int(exc.code or 0)
    except DeskaiError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    return 0


def main() -> None:
    sys.exit(run_app())


def byte_progress() -> Progress:
    """A transient bar over bytes, with rate and ETA (import, pull, verify)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                    transient=True)

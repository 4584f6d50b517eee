"""The Typer application every command module registers its verbs on, and the error boundary.

Library errors (``DeskaiError``) become one line on stderr and exit status 2; nothing a user
types should ever print a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

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


def fail(message: str) -> typer.Exit:
    """Print one line to stderr and return the exit to raise (status 2)."""
    err_console.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(EXIT_USAGE)


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI, mapping deskai's errors to a one-line message and exit status 2."""
    try:
        app(args=argv, standalone_mode=False)
    except DeskaiError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted", highlight=False)
        return 130
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return EXIT_USAGE
        raise
    return 0


def main() -> None:
    sys.exit(run_app())

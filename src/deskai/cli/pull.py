"""The ``pull`` verb: download a GGUF from Hugging Face or a URL into the store."""

from __future__ import annotations

import typer
from rich.progress import (
    TaskID,
)

from deskai.cli._app import app, byte_progress, console
from deskai.store import Store
from deskai.store.pull import PullProgress, PullResult, pull


@app.command("pull")
def pull_model(
    reference: str = typer.Argument(..., help="hf.co/USER/REPO[:QUANT] (default quant Q4_K_M), "
                                    "or an https:// URL of a .gguf file, optionally ending "
                                    "#sha256=HEX."),
    name: str = typer.Option(None, "--name", "-n", help="Store name (default: hf.co/USER/REPO:"
                             "QUANT, or the URL's file name)."),
    sha256: str = typer.Option(None, "--sha256", help="Expected sha256 of a URL's file."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow plain http to other hosts "
                                  "than this one."),
) -> None:
    """Pull a model; an interrupted pull resumes where it stopped when run again."""
    with _PullDisplay() as display:
        result = pull(Store(), reference, name=name, sha256=sha256, insecure=insecure,
                      progress=display.update)
    _print_result(result)


class _PullDisplay:
    """Ollama-style status lines, plus a rich bar (rate, ETA) while bytes arrive."""

    def __init__(self) -> None:
        self._progress = byte_progress()
        self._task: TaskID | None = None

    def __enter__(self) -> _PullDisplay:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def update(self, event: PullProgress) -> None:
        if event.completed is None:
            self._progress.console.print(event.status, highlight=False)
            return
        if self._task is None:
            self._task = self._progress.add_task(event.status, total=event.total,
                                                 completed=event.completed)
        self._progress.update(self._task, total=event.total, completed=event.completed)


def _print_result(result: PullResult) -> None:
    manifest = result.manifest
    console.print(f"pulled [bold]{manifest.name}[/] ({manifest.size:,} bytes, "
                  f"{manifest.model_layer.digest[:19]})")
    if result.resumed_from:
        console.print(f"resumed from byte {result.resumed_from:,}", highlight=False)
    if not result.published:
        console.print(f"the source published no checksum; sha256 computed: {result.sha256}",
                      highlight=False)

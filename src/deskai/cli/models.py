"""Model store verbs: import, list, show, rm."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.table import Table

from deskai.cli._app import app, byte_progress, console, print_table
from deskai.store import (
    Manifest,
    Store,
    parse_model_name,
    read_gguf_info,
    resolve_model_path,
)


@app.command("import")
def import_model(
    file: Path = typer.Argument(..., help="A GGUF file, or a Hugging Face model directory "
                                "(converted with llama.cpp's converter)."),
    name: str = typer.Argument(..., help="Name to give it, NAME[:TAG] (tag defaults to latest)."),
) -> None:
    """Import a GGUF file (or convert a Hugging Face model directory) as NAME[:TAG]."""
    store = Store()
    parse_model_name(name)  # refuse a bad name before any work starts
    size = file.stat().st_size if file.is_file() else 0
    with _byte_progress(f"importing {file.name}", size) as advance:
        manifest = store.import_model(file, name, progress=advance)
    console.print(f"imported [bold]{manifest.name}[/] "
                  f"({_human_bytes(manifest.size)}, {manifest.model_layer.digest[:19]})")


@app.command("list")
def list_models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the models in the store."""
    manifests = Store().list()
    if as_json:
        typer.echo(json.dumps([_list_entry(m) for m in manifests], indent=2))
        return
    table = Table(box=None, header_style="bold")
    # a name is what the user copies into the next command: wrapped, never cut with "…"
    table.add_column("NAME", overflow="fold")
    for column in ("ID", "SIZE", "ARCH", "PARAMS", "QUANT", "CREATED"):
        table.add_column(column)
    for m in manifests:
        details = m.details
        table.add_row(m.name, m.model_layer.digest.removeprefix("sha256:")[:12],
                      _human_bytes(m.size), str(details.get("architecture", "?")),
                      _human_count(details.get("parameter_count")),
                      str(details.get("quantization", "?")), m.created_at[:19].replace("T", " "))
    print_table(table)


def _list_entry(manifest: Manifest) -> dict[str, object]:
    details = manifest.details
    return {"name": manifest.name, "digest": manifest.model_layer.digest, "size": manifest.size,
            "architecture": details.get("architecture"),
            "parameter_count": details.get("parameter_count"),
            "quantization": details.get("quantization"), "created_at": manifest.created_at}


@app.command("show")
def show_model(
    name: str = typer.Argument(..., help="A model in the store."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    template: bool = typer.Option(False, "--template", help="Also print the chat template."),
) -> None:
    """Show a model's facts, read from its GGUF header (never the weights)."""
    store = Store()
    path = resolve_model_path(store, name)
    manifest = store.get(name)
    info = read_gguf_info(path)
    data = {"name": manifest.name, "digest": manifest.model_layer.digest, "path": str(path),
            **info.to_dict(with_template=template)}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = {
        "name": manifest.name, "architecture": info.architecture,
        "parameters": f"{_human_count(info.parameter_count)} ({info.parameter_count:,})",
        "quantization": info.quantization,
        "context length": f"{info.context_length:,}" if info.context_length else "unknown",
        "file size": f"{_human_bytes(info.file_size)} ({info.file_size:,} bytes)",
        "chat template": "yes" if info.has_chat_template else "no (deskai's fallback is used)",
        "digest": manifest.model_layer.digest, "source": manifest.source or "",
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    print_table(table)
    if template and info.chat_template:
        console.print(info.chat_template, markup=False, highlight=False)


@app.command("rm")
def remove_model(name: str = typer.Argument(..., help="A model in the store.")) -> None:
    """Remove a model (its blobs go too, unless another model shares them)."""
    manifest = Store().remove(name)
    console.print(f"deleted {manifest.name}")


@contextlib.contextmanager
def _byte_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over bytes (rate and ETA); yields the callback that advances it."""
    progress = byte_progress()
    task = progress.add_task(description, total=total or None)
    with progress:
        yield lambda n: progress.advance(task, n)


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _human_count(count: object) -> str:
    if not isinstance(count, int):
        return "?"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.1f}{suffix}"
    return str(count)

"""``deskai bench``: load any OpenAI-compatible server and report latency and throughput."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from deskai import config
from deskai.benchmark import LoadSpec, run_benchmark
from deskai.benchmark.report import COLUMNS, plot, table_rows
from deskai.cli._app import app, console, fail


@app.command("bench")
def bench(
    model: str = typer.Option(None, "--model", "-m", help="Model name the server knows."),
    url: str = typer.Option(None, help="Server base URL (default http://127.0.0.1:3375)."),
    concurrency: str = typer.Option("1,4,16", help="Comma-separated concurrency levels."),
    prompt_tokens: int = typer.Option(64, "--prompt-tokens", min=1,
                                      help="Approximate prompt length."),
    output_tokens: int = typer.Option(128, "--output-tokens", min=1,
                                      help="max_tokens of each request."),
    requests: int = typer.Option(None, "--requests", min=1,
                                 help="Requests per level (default: the level, at least 4)."),
    api_key: str = typer.Option(None, "--api-key", help="Bearer key, if the server needs one."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plot_file: Path = typer.Option(None, "--plot", help="Also write a PNG plot here."),
) -> None:
    """Measure TTFT, inter-token latency, output tok/s and requests/s at each concurrency."""
    try:
        levels = [int(part) for part in concurrency.split(",") if part.strip()]
    except ValueError:
        raise fail(f"--concurrency takes numbers like 1,4,16, not {concurrency!r}") from None
    if not levels or min(levels) < 1:
        raise fail("--concurrency needs at least one level of 1 or more")
    base = url or f"http://127.0.0.1:{config.port()}"
    spec = LoadSpec(base, model or config.default_model(), prompt_tokens, output_tokens,
                    api_key or config.api_key())
    results = run_benchmark(spec, levels, requests)
    if plot_file is not None:
        plot({base: results}, plot_file, title=f"{spec.model}: {prompt_tokens} in, "
                                              f"{output_tokens} out")
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    table = Table(title=f"{spec.model} at {base}")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for row in table_rows(results):
        table.add_row(*row)
    console.print(table)

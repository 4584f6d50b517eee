"""``deskai mcp``: deskai's models and planner as tools for an MCP host, over stdio.

The same server answers at ``/mcp`` under ``deskai serve`` (streamable HTTP)."""

from __future__ import annotations

import typer

from deskai import config
from deskai.cli._app import app
from deskai.cli.serving import engine_options
from deskai.store import Store, ensure_bundled_model


@app.command("mcp")
def mcp_command(
    threads: int = typer.Option(None, "--threads", "-t", min=1,
                                help="CPU threads for inference (default: every core)."),
    context: int = typer.Option(None, "--context", "-c", min=16,
                                help="Context length per request, in tokens ($DESKAI_CONTEXT)."),
    parallel: int = typer.Option(1, "--parallel", "-np", min=1, max=256,
                                 help="Requests a model decodes together."),
    keep_alive: float = typer.Option(None, "--keep-alive",
                                     help="Seconds an idle model stays loaded; <0 forever."),
) -> None:
    """Serve deskai's tools (list_models, show, fit, generate, chat, embed) to an MCP host over
    stdio; nothing but the protocol is written to stdout."""
    from deskai.agents.mcp_server import build_server
    from deskai.runtime.manager import ModelManager

    store = Store()
    ensure_bundled_model(store)
    manager = ModelManager(store, engine_options(threads, context, parallel),
                           keep_alive=config.keep_alive_seconds() if keep_alive is None
                           else keep_alive)
    try:
        build_server(manager, store).run("stdio")
    finally:
        manager.close()

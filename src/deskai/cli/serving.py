"""Verbs that run models: ``serve`` (the HTTP API) and ``run`` (a prompt or a chat)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import typer

from deskai import config
from deskai.cli._app import app, console, err_console
from deskai.cli.chat import TextBackend, open_backend
from deskai.engine.protocol import EngineOptions
from deskai.engine.sampling import SamplingParams
from deskai.errors import DeskaiError
from deskai.store import BUNDLED_MODEL, Store, ensure_bundled_model

_THREADS_HELP = "CPU threads for inference (default: every core; $DESKAI_THREADS)."
_CONTEXT_HELP = "Context length per request, in tokens ($DESKAI_CONTEXT)."


def engine_options(threads: int | None, context: int | None, parallel: int, *,
                   max_queue: int = 64, timeout: float | None = None,
                   batch_invariant: bool = False) -> EngineOptions:
    return EngineOptions(context_length=context or config.context_length(),
                         parallel=parallel, threads=threads or config.threads(),
                         max_queue=max_queue, request_timeout=timeout,
                         batch_invariant=batch_invariant)


@app.command("serve", epilog=f"Environment:\n\n{config.describe()}")
def serve(
    host: str = typer.Option(None, help="Address to bind (default 127.0.0.1; $DESKAI_HOST)."),
    port: int = typer.Option(None, min=1, max=65535,
                             help="Port (default 3375; $DESKAI_PORT)."),
    threads: int = typer.Option(None, "--threads", "-t", min=1, help=_THREADS_HELP),
    context: int = typer.Option(None, "--context", "-c", min=16, help=_CONTEXT_HELP),
    parallel: int = typer.Option(None, "--parallel", "-np", min=1, max=256,
                                 help="Requests decoded together (sequence slots); default: "
                                      "what the model's KV cache fits in free memory."),
    max_queue: int = typer.Option(64, "--max-queue", min=0,
                                  help="Requests that may wait for a slot; beyond, 503."),
    timeout: float = typer.Option(None, "--timeout", min=0.001,
                                  help="Seconds a request may take, queue included; then 504."),
    gpu_layers: str = typer.Option(
        "auto", "--gpu-layers",
        help="Layers to run on the GPU: auto (as many as the planner finds room for), all, "
             "or a number; 0 keeps everything on the CPU."),
    batch_invariant: bool = typer.Option(
        False, "--batch-invariant",
        help="Decode each request on its own so batched output is bit-identical to a solo run "
             "(slower; no prefix cache)."),
    keep_alive: float = typer.Option(None, "--keep-alive",
                                     help="Seconds an idle model stays loaded; <0 forever."),
    log_level: str = typer.Option("info", help="Log level: debug, info, warning, error."),
    api_key: str = typer.Option(None, "--api-key", envvar="DESKAI_API_KEY",
                                help="Require 'Authorization: Bearer KEY' on every route but "
                                     "/health ($DESKAI_API_KEY)."),
    allowed_hosts: list[str] = typer.Option(
        None, "--allowed-hosts",
        help="Host names to serve besides loopback ones (repeatable; '*' for any). Bound to "
             "127.0.0.1 only loopback names are served, against DNS rebinding."),
    cors_origin: list[str] = typer.Option(None, "--cors-origin",
                                          help="Allow browser calls from this origin "
                                               "(repeatable); CORS is off otherwise."),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", min=0.001,
                                      help="Largest request body accepted, in MB."),
    mcp: Path = typer.Option(None, "--mcp", dir_okay=False,
                             help="An mcpServers JSON file: its servers run for /v1/responses "
                                  'requests that ask for them ({"type": "mcp", '
                                  '"server_label": NAME}); off unless given.'),
) -> None:
    """Serve the store's models through the OpenAI API."""
    import uvicorn

    from deskai.agents.servers import load_servers
    from deskai.planner.placement import parse_gpu_layers
    from deskai.runtime.fit import default_slots
    from deskai.runtime.manager import ModelManager
    from deskai.server.app import ServerSettings, create_app

    _configure_logging(log_level)
    store = Store()
    ensure_bundled_model(store)
    context_length = context or config.context_length()
    why = "--parallel"
    if parallel is None:
        parallel, why = default_slots(store, config.default_model(), context_length)
    options = engine_options(threads, context_length, parallel, max_queue=max_queue,
                             timeout=timeout, batch_invariant=batch_invariant)
    manager = ModelManager(store, options, keep_alive=_keep_alive(keep_alive),
                           gpu_layers=parse_gpu_layers(gpu_layers))
    bind_host, bind_port = host or config.host(), port or config.port()
    console.print(f"deskai serving on http://{bind_host}:{bind_port} — "
                  f"{len(store.list())} models in {store.root}, {options.parallel} slots of "
                  f"{options.context_length} tokens ({why}), {options.threads} threads, "
                  f"queue of {options.max_queue}", highlight=False)
    _print_placement(manager, config.default_model())
    try:
        settings = ServerSettings(api_key=api_key or None,
                                  max_body_bytes=int(max_body_mb * 1024 * 1024),
                                  cors_origins=tuple(cors_origin or ()),
                                  bind_host=bind_host,
                                  allowed_hosts=tuple(allowed_hosts or ()),
                                  mcp_servers=tuple(load_servers(mcp)) if mcp else ())
        uvicorn.run(create_app(manager, store, settings), host=bind_host, port=bind_port,
                    log_level=log_level, access_log=False, log_config=None)
    finally:
        manager.close()


@app.command("run")
def run(
    model: str = typer.Argument(None, help=f"Model name (default {BUNDLED_MODEL})."),
    prompt: str = typer.Argument(None, help="Complete this text and exit; omit to chat."),
    max_tokens: int = typer.Option(None, "--max-tokens", "-n",
                                   help="Most tokens to generate (default 128 for a prompt)."),
    temperature: float = typer.Option(0.0, "--temperature",
                                      help="0 is greedy (repeatable); higher is more varied."),
    seed: int = typer.Option(None, help="Seed for sampling."),
    threads: int = typer.Option(None, "--threads", "-t", min=1, help=_THREADS_HELP),
    context: int = typer.Option(None, "--context", "-c", min=16, help=_CONTEXT_HELP),
    url: str = typer.Option(None, help="Server to use (default http://127.0.0.1:3375)."),
    local: bool = typer.Option(False, "--local", help="Never use a running server."),
    gpu_layers: str = typer.Option("auto", "--gpu-layers",
                                   help="Layers on the GPU when run here: auto, all or N."),
) -> None:
    """Complete PROMPT (streamed to stdout), or chat with MODEL when no prompt is given."""
    model = model or config.default_model()
    from deskai.planner.placement import parse_gpu_layers

    backend = open_backend(model, engine_options(threads, context, 1), url=url, local=local,
                           gpu_layers=parse_gpu_layers(gpu_layers))
    try:
        if prompt is not None:
            params = SamplingParams(max_tokens=max_tokens or 128, temperature=temperature,
                                    seed=seed)
            _print_stream(backend.complete(prompt, params))
            sys.stdout.write("\n")
        else:
            _chat_loop(backend, max_tokens, temperature, seed)
    finally:
        backend.close()


def _chat_loop(backend: TextBackend, max_tokens: int | None, temperature: float,
               seed: int | None) -> None:
    err_console.print("chatting — Ctrl-C stops an answer, Ctrl-D quits", style="dim")
    history: list[dict[str, Any]] = []
    while True:
        try:
            text = input(">>> ")
        except EOFError:
            sys.stdout.write("\n")
            return
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            continue
        if not text.strip():
            continue
        history.append({"role": "user", "content": text})
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        answer = _print_stream(backend.chat(history, params))
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": answer.strip()})


def _print_stream(pieces: Any) -> str:
    """Write text as it arrives; Ctrl-C stops this answer (the generation is cancelled)."""
    written: list[str] = []
    try:
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
            written.append(piece)
    except KeyboardInterrupt:
        sys.stdout.write(" [stopped]")
    finally:
        pieces.close()
    return "".join(written)


def _print_placement(manager: Any, model: str) -> None:
    """The planner's placement of the default model, as ``deskai fit --json`` reports it."""
    try:
        placement = manager.placement(model)
    except DeskaiError as exc:
        err_console.print(f"placement of {model}: unknown ({exc})", style="dim")
        return
    console.print(f"{model}: {placement.describe()}", highlight=False)


def _keep_alive(value: float | None) -> float:
    return config.keep_alive_seconds() if value is None else value


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")

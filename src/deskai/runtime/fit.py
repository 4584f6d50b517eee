"""Will a model fit in the memory free now? Asked before every load, answered by the planner.

Ollama refuses a model that does not fit before loading it; so does deskai, with the numbers:
the planner's layer-by-layer estimate of what the engine will hold resident (weights, the KV
cache for every slot, compute buffers, overhead) against what the machine can hand out. A
refused model costs nothing, and the server keeps serving what it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from deskai.engine.protocol import EngineOptions, ModelSpec
from deskai.errors import DeskaiError, InsufficientMemoryError
from deskai.hardware.local import available_memory_bytes
from deskai.planner.memory import Runtime, memory_breakdown
from deskai.planner.readers import read_gguf
from deskai.store import Store, resolve_model_path

log = logging.getLogger("deskai.runtime")
EMBEDDING_BATCH_TOKENS = 2048  # the embedder's context (see engine.llamacpp.embedding)

FitCheck = Callable[[ModelSpec, EngineOptions], None]


def needed_bytes(spec: ModelSpec, options: EngineOptions) -> int:
    """The planner's predicted resident memory of ``spec`` loaded with ``options``."""
    model_file = read_gguf(spec.path)
    if spec.kind == "embedding":
        runtime = Runtime(context=EMBEDDING_BATCH_TOKENS, ubatch=EMBEDDING_BATCH_TOKENS)
    else:
        runtime = Runtime(context=options.context_length, batch=options.parallel,
                          ubatch=options.batch_tokens, kv_unified=not options.batch_invariant)
    return int(memory_breakdown(model_file.architecture, runtime, model_file=model_file).resident)


def check_fits(spec: ModelSpec, options: EngineOptions, *,
               free_bytes: Callable[[], int] = available_memory_bytes) -> None:
    """Raise ``InsufficientMemoryError`` when ``spec`` would not fit in free memory."""
    try:
        needed = needed_bytes(spec, options)
    except DeskaiError as exc:  # an architecture the planner cannot describe: load and see
        log.warning("no memory estimate for %s (%s); loading without a fit check",
                    spec.path.name, exc)
        return
    free = free_bytes()
    if needed > free:
        raise InsufficientMemoryError(
            f"{spec.name} needs {_gib(needed)} of memory ({spec.architecture}, "
            f"{options.parallel} slots of {options.context_length} tokens) but only "
            f"{_gib(free)} is free; free memory, or lower --parallel or --context",
            needed_bytes=needed, free_bytes=free)


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


def default_slots(store: Store, model: str, context: int) -> tuple[int, str]:
    """Slots for ``serve`` when ``--parallel`` is not given, and why: as many as ``model``'s
    KV cache at this context fits in a quarter of free memory, at most 8 per core."""
    from deskai.engine.llamacpp import capacity  # how llama.cpp lays out its KV cache

    try:
        per_slot = capacity.kv_bytes_per_slot(resolve_model_path(store, model), context)
    except DeskaiError:
        return 4, "default model unreadable"
    available = available_memory_bytes()
    slots = capacity.default_parallel(per_slot, available)
    return slots, (f"auto: {per_slot / 2**20:.0f} MiB of KV cache per slot, "
                   f"{available / 2**30:.1f} GiB free")

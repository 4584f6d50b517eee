"""Where a model goes and whether it fits: asked before every load, answered by the planner.

Ollama refuses a model that does not fit before loading it; so does deskai, with the numbers.
``placement_for`` is the planner's layer-by-layer answer for this machine — how many layers
the GPU takes (``--gpu-layers auto|all|N``), what stays in host memory — the same function
``deskai fit`` reports and ``deskai serve`` prints. ``check_fits`` refuses a model whose host
share (or, when layers were forced onto it, device share) is more than is free, and otherwise
returns the engine options with the placement applied. A refused model costs nothing, and
the server keeps serving what it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from deskai.engine.protocol import EngineOptions, ModelSpec
from deskai.errors import DeskaiError, InsufficientMemoryError
from deskai.hardware.gpu import detect_gpus
from deskai.hardware.local import available_memory_bytes
from deskai.planner.memory import Runtime
from deskai.planner.placement import Device, GpuLayers, Placement, place
from deskai.planner.readers import read_gguf
from deskai.runtime.backends import offload_supported
from deskai.store import Store, resolve_model_path

log = logging.getLogger("deskai.runtime")
EMBEDDING_BATCH_TOKENS = 2048  # the embedder's context (see engine.llamacpp.embedding)

FitCheck = Callable[[ModelSpec, EngineOptions], EngineOptions | None]
"""Refuses a model that will not fit, else the options to load it with (None: unchanged)."""


def local_device() -> Device | None:
    """The GPU a placement may use: the first NVIDIA one NVML reports (a unified-memory part
    such as the GB10 shares the host's memory) or Apple silicon's; None on a machine with
    neither."""
    gpus = detect_gpus().devices
    if not gpus:
        return None
    gpu = gpus[0]  # llama.cpp's main GPU; a split over several is the planner's next step
    return Device(gpu.name, gpu.memory_free_bytes, unified=gpu.unified)


def runtime_of(spec: ModelSpec, options: EngineOptions) -> Runtime:
    """How the engine will run ``spec``, in the planner's terms."""
    if spec.kind == "embedding":
        return Runtime(context=EMBEDDING_BATCH_TOKENS, ubatch=EMBEDDING_BATCH_TOKENS)
    return Runtime(context=options.context_length, batch=options.parallel,
                   ubatch=options.batch_tokens, kv_unified=not options.batch_invariant)


def placement_for(spec: ModelSpec, options: EngineOptions, gpu_layers: GpuLayers = "auto", *,
                  device: Device | None | bool = True) -> Placement:
    """Where ``spec``'s layers go on this machine (``device=True``: the one detected)."""
    model_file = read_gguf(spec.path)
    found = local_device() if device is True else device or None
    layers: GpuLayers = 0 if spec.kind == "embedding" else gpu_layers  # embedders: CPU
    return place(model_file.architecture, runtime_of(spec, options), found, requested=layers,
                 model_file=model_file, offload_supported=offload_supported())


def check_fits(spec: ModelSpec, options: EngineOptions, gpu_layers: GpuLayers = "auto", *,
               free_bytes: Callable[[], int] = available_memory_bytes,
               device: Device | None | bool = True) -> EngineOptions:
    """``options`` with ``spec``'s placement applied; ``InsufficientMemoryError`` when its
    host share is more than ``free_bytes()`` (or a forced device share more than the device
    has)."""
    try:
        placement = placement_for(spec, options, gpu_layers, device=device)
    except DeskaiError as exc:  # an architecture the planner cannot describe: load and see
        log.warning("no memory estimate for %s (%s); loading without a fit check",
                    spec.path.name, exc)
        return options
    free = free_bytes()
    host = placement.host_memory_bytes
    if host > free:
        raise InsufficientMemoryError(
            f"{spec.name} needs {_gib(host)} of memory ({spec.architecture}, "
            f"{options.parallel} slots of {options.context_length} tokens"
            f"{', ' + placement.describe() if placement.gpu_layers else ''}) but only "
            f"{_gib(free)} is free; free memory, or lower --parallel or --context",
            needed_bytes=int(host), free_bytes=free)
    return replace(options, gpu_layers=placement.gpu_layers, flash_attn=placement.flash_attn)


def _gib(size: float) -> str:
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

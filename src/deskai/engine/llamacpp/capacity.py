"""How much KV cache one sequence slot costs, and how many slots to give a model by default.

The size comes from the planner, which mirrors what llama.cpp allocates with deskai's context
settings: an f16 K and V per layer per token, one buffer for all slots (``kv_unified``), and
windowed (sliding-window attention) layers holding one window per slot plus one shared
micro-batch instead of the whole context. Gemma 3 windows five of every six layers, so its
slots are several times smaller than a full-size cache would make them — and smaller than with
one stream per slot (llama-server's ``-np``), where each stream pads its window by a whole
micro-batch.
"""

from __future__ import annotations

import os

from deskai.planner.memory import Runtime, kv_cache_bytes
from deskai.planner.readers import read_gguf

DEFAULT_KV_SHARE = 0.25   # of the available memory, the most the default slot count may use
MAX_DEFAULT_SLOTS_PER_CORE = 8


def kv_bytes_per_slot(gguf: str | os.PathLike[str], n_ctx: int, *, slots: int = 32,
                      swa_full: bool = False, unified: bool = True) -> int:
    """Bytes of K and V one of ``slots`` slots of ``n_ctx`` tokens holds, as llama.cpp
    allocates them (``unified``: deskai's one buffer; otherwise one stream per slot).

    The planner's layer-by-layer KV model (validated against llama.cpp's own allocation log)
    is the one place this is computed.
    """
    architecture = read_gguf(gguf).architecture
    runtime = Runtime(context=n_ctx, batch=slots, swa_full=swa_full, kv_unified=unified)
    return int(kv_cache_bytes(architecture, runtime)) // slots


def slots_that_fit(budget_bytes: int, per_slot: int) -> int:
    return budget_bytes // per_slot if per_slot > 0 else 0


def default_parallel(per_slot: int, available_bytes: int, cores: int | None = None) -> int:
    """Slots to load a model with when ``--parallel`` is not given.

    As many as fit in a quarter of the available memory, but no more than eight per core:
    beyond that a CPU decodes no faster, and every extra slot only lengthens each step.
    """
    cap = MAX_DEFAULT_SLOTS_PER_CORE * (cores or os.cpu_count() or 1)
    return max(1, min(cap, slots_that_fit(int(available_bytes * DEFAULT_KV_SHARE), per_slot)))

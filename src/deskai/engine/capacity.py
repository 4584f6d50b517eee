"""How much KV cache one sequence slot costs, and how many slots to give a model by default.

Pure arithmetic over a GGUF's metadata, mirroring what llama.cpp allocates with deskai's
context settings: an f16 K and V per layer per token, one stream per slot
(``kv_unified=False``), and windowed (sliding-window attention) layers sized
``pad256(n_swa + n_ubatch)`` instead of the whole context. Gemma 3 windows five of every six
layers, so its slots are several times smaller than a full-size cache would make them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

F16_BYTES = 2
DEFAULT_KV_SHARE = 0.25   # of the available memory, the most the default slot count may use
MAX_DEFAULT_SLOTS_PER_CORE = 8


@dataclass(frozen=True, slots=True)
class KvShape:
    """The parts of a model that size its KV cache."""

    n_layer: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_swa: int = 0          # sliding window; 0 when every layer attends to everything
    swa_layers: int = 0     # how many layers use the window

    @property
    def bytes_per_token_layer(self) -> int:
        return self.n_head_kv * (self.key_length + self.value_length) * F16_BYTES


def kv_shape_from_metadata(meta: dict[str, Any]) -> KvShape:
    """Read the KV-relevant fields of a GGUF's metadata (``read_gguf_metadata``)."""
    arch = str(meta.get("general.architecture", ""))
    n_layer = int(meta.get(f"{arch}.block_count", 0))
    n_head = int(_first(meta.get(f"{arch}.attention.head_count"), 1))
    n_embd = int(meta.get(f"{arch}.embedding_length", 0))
    key = int(meta.get(f"{arch}.attention.key_length", n_embd // max(n_head, 1)))
    n_swa = int(meta.get(f"{arch}.attention.sliding_window", 0) or 0)
    return KvShape(
        n_layer=n_layer,
        n_head_kv=int(_first(meta.get(f"{arch}.attention.head_count_kv"), n_head)),
        key_length=key,
        value_length=int(meta.get(f"{arch}.attention.value_length", key)),
        n_swa=n_swa,
        swa_layers=_swa_layer_count(arch, n_layer) if n_swa else 0,
    )


def kv_bytes_per_slot(shape: KvShape, n_ctx: int, n_ubatch: int = 512, *,
                      swa_full: bool = False) -> int:
    """Bytes of K and V one slot of ``n_ctx`` tokens holds, as llama.cpp allocates it."""
    window = n_ctx if swa_full or not shape.n_swa else min(n_ctx, _pad(shape.n_swa + n_ubatch))
    full_layers = shape.n_layer - shape.swa_layers
    return shape.bytes_per_token_layer * (full_layers * n_ctx + shape.swa_layers * window)


def slots_that_fit(budget_bytes: int, per_slot: int) -> int:
    return budget_bytes // per_slot if per_slot > 0 else 0


def default_parallel(per_slot: int, available_bytes: int, cores: int | None = None) -> int:
    """Slots to load a model with when ``--parallel`` is not given.

    As many as fit in a quarter of the available memory, but no more than eight per core:
    beyond that a CPU decodes no faster, and every extra slot only lengthens each step.
    """
    cap = MAX_DEFAULT_SLOTS_PER_CORE * (cores or os.cpu_count() or 1)
    return max(1, min(cap, slots_that_fit(int(available_bytes * DEFAULT_KV_SHARE), per_slot)))


def available_memory() -> int:
    """Bytes of memory the machine can still hand out (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def _pad(value: int, to: int = 256) -> int:
    return -(-value // to) * to


def _first(value: Any, default: int) -> Any:
    # some GGUFs store per-layer head counts as arrays
    if isinstance(value, (list, tuple)):
        return value[0] if value else default
    return default if value is None else value


def _swa_layer_count(arch: str, n_layer: int) -> int:
    # llama.cpp's Gemma 3: five windowed layers, then one global, repeating (swa pattern 6).
    # Other architectures count as unwindowed: a conservative guess, never too many slots.
    if arch.startswith("gemma3"):
        return sum(1 for layer in range(n_layer) if (layer + 1) % 6 != 0)
    return 0

"""How much memory a model needs to serve: weights, KV cache, compute buffers, overhead.

The model is llama.cpp's, because that is what deskai runs:

- **weights**: the GGUF's tensor bytes when there is a file, else parameters x bits/8 of the
  quantization (``deskai.planner.quant``).
- **KV cache**: summed layer by layer, each layer caching its own width (K and V heads under
  grouped-query attention, one latent under MLA) for the tokens it keeps: the whole context,
  or for a sliding-window layer ``pad256(window + n_ubatch)`` (llama.cpp's SWA cache size,
  ``src/llama-kv-cache-iswa.cpp``) unless ``swa_full``. Cells are padded to 256 per sequence.
- **compute**: the graph buffer llama.cpp reserves for its worst-case micro-batch; its
  allocator reuses memory, so the buffer is the larger of the attention phase (K·Q scores
  ``heads x n_kv x n_ubatch`` f32, absent under flash attention) and the output phase
  (``vocab x n_ubatch`` f32 logits, the worst case reserves one output per token).
- **overhead**: the process itself (Python + libllama, measured on this machine) plus the
  vocabulary's tables, or a CUDA context on a GPU.

``resident`` is what a CPU or unified-memory machine actually holds at peak: Linux does not
back the untouched part of the worst-case compute buffer, so only the part one real
micro-batch uses counts, while tensors llama.cpp repacks for the CPU count twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deskai.errors import InvalidInputError
from deskai.planner.architectures import Architecture
from deskai.planner.quant import Quant, kv_bytes_per_element, weight_bytes
from deskai.planner.readers import ModelFile

MiB = 2**20
#: llama.cpp pads KV cells to 256 per sequence (``llama_kv_cache::get_padding``).
KV_PAD = 256
#: Default micro-batch of llama.cpp (``n_ubatch``).
DEFAULT_UBATCH = 512
#: Python + llama-cpp-python + libllama with nothing loaded, peak RSS measured on this
#: project's machine (docs/planner.md, "Validation").
PROCESS_BASE_BYTES = 40 * MiB
#: llama.cpp's vocabulary tables per token (token text, score, attributes, piece cache,
#: text->id map): an estimate from the structures in src/llama-vocab.cpp, checked against
#: measured RSS in docs/planner.md.
VOCAB_BYTES_PER_TOKEN = 150
#: A CUDA context plus cuBLAS workspace per GPU: a stated estimate, not measured here.
CUDA_CONTEXT_BYTES = 512 * MiB


@dataclass(frozen=True, slots=True)
class Runtime:
    """How the model is run: context per sequence, parallel sequences, cache and graph knobs."""

    context: int
    batch: int = 1
    ubatch: int = DEFAULT_UBATCH
    kv_type: str = "f16"
    flash_attn: bool = False
    swa_full: bool = False
    kv_unified: bool = False  # one KV buffer for all ``batch`` sequences (deskai's engine)
    device_kind: str = "cpu"  # "cpu", "unified" or "gpu"
    prompt_tokens: int | None = None  # for the resident estimate; default: one ubatch

    def __post_init__(self) -> None:
        for name in ("context", "batch", "ubatch"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be a positive number, got "
                                        f"{getattr(self, name)}", param=name)
        kv_bytes_per_element(self.kv_type)


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    weights: float
    kv_cache: float
    compute: float
    overhead: float
    resident: float  # predicted peak RSS on a CPU / unified-memory machine

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.compute + self.overhead

    def to_dict(self) -> dict[str, int]:
        return {"weights": round(self.weights), "kv_cache": round(self.kv_cache),
                "compute": round(self.compute), "overhead": round(self.overhead),
                "total": round(self.total)}


def pad(value: int, to: int = KV_PAD) -> int:
    return int(math.ceil(value / to) * to)


def kv_cells(arch: Architecture, layer: int, runtime: Runtime) -> int:
    """KV cells ``layer`` allocates for ``runtime.batch`` sequences (llama.cpp's sizes, padded).

    One stream per sequence, or with ``kv_unified`` one stream for all of them; a windowed layer
    keeps a window per sequence plus one micro-batch per stream.
    """
    streams, per_stream = (1, runtime.batch) if runtime.kv_unified else (runtime.batch, 1)
    context = pad(runtime.context * per_stream)
    if not arch.is_sliding(layer) or runtime.swa_full:
        return streams * context
    return streams * min(context, pad(arch.sliding_window * per_stream + runtime.ubatch))


def kv_cache_bytes(arch: Architecture, runtime: Runtime) -> float:
    """The KV cache summed over layers, for ``runtime.batch`` sequences."""
    element = kv_bytes_per_element(runtime.kv_type)
    return element * sum(arch.kv_elements_per_token(i) * kv_cells(arch, i, runtime)
                         for i in range(arch.layers))


def compute_buffer_bytes(arch: Architecture, runtime: Runtime, *, tokens: int | None = None,
                         outputs: int | None = None, kv_len: int | None = None) -> float:
    """llama.cpp's graph buffer for one micro-batch of ``tokens`` with ``outputs`` logits rows.

    Defaults are the worst case llama.cpp reserves: a full ubatch, every token an output,
    attention over the whole cache.
    """
    n_tokens = tokens if tokens is not None else min(runtime.ubatch, runtime.context *
                                                     runtime.batch)
    n_outputs = outputs if outputs is not None else n_tokens
    n_kv = kv_len if kv_len is not None else pad(runtime.context) * runtime.batch
    f32 = 4
    hidden_states = 2 * n_tokens * arch.hidden * f32
    scores = 0 if runtime.flash_attn else arch.heads * n_kv * n_tokens * f32
    attention_phase = hidden_states + scores + n_tokens * arch.heads * arch.head_dim * f32 * 3
    ffn_width = max(arch.ffn, arch.expert_ffn * max(arch.active_experts, 1))
    ffn_phase = hidden_states + 2 * n_tokens * ffn_width * f32
    output_phase = n_outputs * arch.vocab * f32 + n_tokens * arch.hidden * f32
    return float(max(attention_phase, ffn_phase, output_phase))


def overhead_bytes(arch: Architecture, runtime: Runtime) -> float:
    """The process and vocabulary; on a GPU, the CUDA context as well."""
    base = PROCESS_BASE_BYTES + arch.vocab * VOCAB_BYTES_PER_TOKEN
    return base + (CUDA_CONTEXT_BYTES if runtime.device_kind == "gpu" else 0)


def resident_compute_bytes(arch: Architecture, runtime: Runtime) -> float:
    """The part of the compute buffer a real prompt touches: one ubatch of the prompt, a
    single logits row, attention over the cells the prompt filled."""
    prompt = runtime.prompt_tokens or runtime.ubatch
    tokens = min(prompt, runtime.ubatch)
    return compute_buffer_bytes(arch, runtime, tokens=tokens, outputs=1,
                                kv_len=pad(min(prompt, runtime.context)))


def memory_breakdown(arch: Architecture, runtime: Runtime, *, quant: Quant | None = None,
                     model_file: ModelFile | None = None) -> MemoryBreakdown:
    """Weights, KV cache, compute and overhead for ``arch`` run as ``runtime`` describes."""
    if model_file is not None and quant is None:
        weights = float(model_file.weight_bytes)
        repacked = float(model_file.cpu_repacked_bytes) if runtime.device_kind == "cpu" else 0.0
    elif quant is not None:
        weights, repacked = weight_bytes(arch, quant), 0.0
    else:
        raise InvalidInputError("a quantization is needed for a model without a file")
    kv = kv_cache_bytes(arch, runtime)
    compute = compute_buffer_bytes(arch, runtime)
    overhead = overhead_bytes(arch, runtime)
    resident = weights + repacked + kv + resident_compute_bytes(arch, runtime) + overhead
    return MemoryBreakdown(weights, kv, compute, overhead, resident)

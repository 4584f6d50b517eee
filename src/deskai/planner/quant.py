"""Weight formats: bits per weight, and what a format costs for a given architecture.

K-quant mixes (q4_k_m, q5_k_m) keep some tensors at higher precision, so their whole-model
average is above the block format's nominal rate; the averages are llama.cpp's own measured
figures. Microscaled 4-bit formats (mxfp4, nvfp4) are applied to the linear layers only; the
embedding and LM head stay at q8_0, as the published GGUFs of gpt-oss do.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from deskai.errors import InvalidInputError
from deskai.planner.architectures import Architecture


@dataclass(frozen=True, slots=True)
class Quant:
    name: str
    bits: float  # average bits per weight over the linear layers
    embedding_bits: float  # bits per weight of the token embedding and LM head
    compute_dtype: str  # tensor-core precision prefill runs at
    source: str


QUANTS: dict[str, Quant] = {q.name: q for q in (
    Quant("f32", 32.0, 32.0, "fp32", "IEEE float32"),
    Quant("f16", 16.0, 16.0, "bf16", "IEEE float16"),
    Quant("bf16", 16.0, 16.0, "bf16", "bfloat16"),
    Quant("fp8", 8.0, 16.0, "fp8", "FP8 E4M3 weights, per-tensor scale; embeddings kept 16-bit"),
    Quant("q8_0", 8.5, 8.5, "bf16", "ggml block_q8_0: 32 int8 + one fp16 scale = 34 B / 32"),
    Quant("q6_k", 6.5625, 6.5625, "bf16",
          "ggml block_q6_K: 210 B / 256 weights; llama.cpp quantize README: 6.56 bpw"),
    Quant("q5_k_m", 5.68, 5.68, "bf16", "llama.cpp tools/quantize/README.md: Q5_K_M 5.68 bpw"),
    Quant("q4_k_m", 4.84, 4.84, "bf16", "llama.cpp tools/quantize/README.md: Q4_K_M 4.84 bpw"),
    Quant("q4_0", 4.5, 4.5, "bf16", "ggml block_q4_0: 16 B of nibbles + fp16 scale = 18 B / 32"),
    Quant("q3_k_m", 3.91, 3.91, "bf16", "llama.cpp tools/quantize/README.md: Q3_K_M 3.91 bpw"),
    Quant("q2_k", 3.35, 3.35, "bf16", "llama.cpp tools/quantize/README.md: Q2_K 3.35 bpw"),
    Quant("mxfp4", 4.25, 8.5, "fp4", "OCP MX spec: 32 FP4 E2M1 + one E8M0 scale = 17 B / 32"),
    Quant("nvfp4", 4.5, 8.5, "fp4", "NVIDIA NVFP4: 16 FP4 E2M1 + one FP8 E4M3 scale = 9 B / 16"),
)}

#: Best first: the order ``deskai fit`` tries when no --quant is given.
QUALITY_ORDER: tuple[str, ...] = ("bf16", "q8_0", "fp8", "q6_k", "q5_k_m", "q4_k_m", "nvfp4",
                                  "mxfp4", "q4_0", "q3_k_m", "q2_k")

#: KV-cache element sizes in bytes (llama.cpp --cache-type-k/-v; q8_0 is 34 B per 32).
KV_BYTES: dict[str, float] = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32,
                              "fp8": 1.0, "q4_0": 18 / 32}


def get_quant(name: str) -> Quant:
    wanted = name.strip().lower().replace("-", "_")
    if wanted in QUANTS:
        return QUANTS[wanted]
    close = difflib.get_close_matches(wanted, list(QUANTS), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise InvalidInputError(f"unknown quantization {name!r}{hint} "
                            f"(known: {', '.join(QUANTS)})", param="quant")


def kv_bytes_per_element(kind: str) -> float:
    wanted = kind.strip().lower()
    if wanted not in KV_BYTES:
        raise InvalidInputError(f"unknown KV cache type {kind!r} (known: {', '.join(KV_BYTES)})",
                                param="kv_type")
    return KV_BYTES[wanted]


def weight_bytes(arch: Architecture, quant: Quant) -> float:
    """Bytes of every weight at ``quant`` (norms stay f32 but are too small to matter)."""
    embeddings = arch.embedding_params() + arch.output_params()
    return arch.block_params() * quant.bits / 8 + embeddings * quant.embedding_bits / 8


def active_weight_bytes(arch: Architecture, quant: Quant, batch: int = 1) -> float:
    """Bytes one decode step reads: every dense weight, the experts the batch routes to,
    and the LM head; the token embedding is a lookup of ``batch`` rows."""
    lm_head = arch.vocab * arch.hidden * quant.embedding_bits / 8
    dense = (arch.block_params() - arch.expert_params()) * quant.bits / 8
    if not arch.is_moe:
        return dense + lm_head
    per_expert = 3 * arch.hidden * arch.expert_ffn * quant.bits / 8
    moe_layers = sum(arch.is_moe_layer(i) for i in range(arch.layers))
    return dense + lm_head + moe_layers * per_expert * experts_touched(arch, batch)


def experts_touched(arch: Architecture, batch: int) -> float:
    """Expected distinct routed experts a batch reads per layer (uniform routing)."""
    if not arch.is_moe:
        return 0.0
    share = arch.active_experts / arch.experts
    return arch.experts * (1 - (1 - share) ** max(batch, 1))

"""How fast: decode and prefill tokens per second from a roofline times a stated efficiency.

Decode is memory-bound: each step reads every weight a token touches (for a mixture of
experts only the routed experts, for a batch the union of their experts) plus the KV cache
so far, so ``tok/s = batch x bandwidth x efficiency / bytes per step``, unless the FLOPs of
the batch (``2 x active parameters``, LM head included, plus attention, per sequence) take
longer: a step takes ``max(memory time, compute time)``. On a CPU the compute side is real
even at batch 1 (a 262k-vocabulary LM head is ~170M multiply-adds per token on two cores);
``deskai hw`` measures this machine's matmul FLOP rate rather than assuming a clock. Prefill
is compute-bound: ``peak FLOP/s x efficiency / FLOPs per token`` (the LM head once per
prompt, as llama.cpp computes only the last token's logits), unless reading the weights once
per micro-batch takes longer.

The efficiencies are stated constants, not fitted per model (the one for sub-6-bit formats is
calibrated once on published llama.cpp runs); docs/planner.md compares the predictions with
measurements on this machine and with published figures, misses included.
"""

from __future__ import annotations

from dataclasses import dataclass

from deskai.hardware.catalog import Accelerator
from deskai.planner.architectures import Architecture
from deskai.planner.memory import Runtime
from deskai.planner.quant import Quant, active_weight_bytes, kv_bytes_per_element, weight_bytes
from deskai.planner.readers import ModelFile

#: Fraction of peak memory bandwidth a decode step reaches, by device kind. GPUs: llama.cpp
#: and vLLM reach 70-80% of HBM/GDDR peak in decode; unified LPDDR the same; CPUs: the
#: catalog lists theoretical DRAM figures, of which a decode loop streams about 60%.
BANDWIDTH_EFFICIENCY: dict[str, float] = {"gpu": 0.75, "unified": 0.75, "cpu": 0.6}
#: Formats under 6 bits per weight (q5_k_m and below, q4_0, MXFP4, NVFP4) decode further below
#: the roofline on GPUs and unified memory: each byte holds twice the weights of q8_0 to unpack.
#: Calibrated, not assumed: the mean efficiency four published 4-bit llama.cpp runs imply
#: (DGX Spark: gpt-oss-20b/120b MXFP4, Gemma 3 4B Q4_0; RTX 3090: Llama 3 8B Q4_0), where
#: Q8_0 runs keep ~0.75; docs/planner.md, "Decode efficiency", has the runs and sources.
LOW_BIT_BANDWIDTH_EFFICIENCY: dict[str, float] = {"gpu": 0.67, "unified": 0.67}
LOW_BIT_MAX_BITS = 6.0
#: For a machine whose bandwidth was *measured* (``deskai hw``) the copy benchmark already
#: paid the losses; decode streams nearly as well as a copy.
MEASURED_BANDWIDTH_EFFICIENCY = 0.9
#: Fraction of dense peak FLOP/s prefill reaches (model FLOPs utilisation).
COMPUTE_EFFICIENCY: dict[str, float] = {"gpu": 0.5, "unified": 0.4, "cpu": 0.5}


@dataclass(frozen=True, slots=True)
class Speed:
    decode_tokens_per_s: float
    prefill_tokens_per_s: float
    decode_bytes_per_step: float
    decode_bound: str  # "memory" or "compute"
    prefill_bound: str


def _bandwidth_efficiency(device: Accelerator) -> float:
    if device.key == "local":
        return MEASURED_BANDWIDTH_EFFICIENCY
    return BANDWIDTH_EFFICIENCY.get(device.kind, 0.6)


def decode_bandwidth_efficiency(device: Accelerator, bits_per_weight: float) -> float:
    """The share of bandwidth a decode step streams at, lower for sub-6-bit formats."""
    if device.key != "local" and bits_per_weight < LOW_BIT_MAX_BITS \
            and device.kind in LOW_BIT_BANDWIDTH_EFFICIENCY:
        return LOW_BIT_BANDWIDTH_EFFICIENCY[device.kind]
    return _bandwidth_efficiency(device)


def bits_per_weight(arch: Architecture, *, quant: Quant | None,
                    model_file: ModelFile | None) -> float:
    """The format's average bits per weight: the quantization's, or the file's own."""
    if quant is not None or model_file is None:
        assert quant is not None
        return quant.bits
    return model_file.weight_bytes * 8 / max(arch.params, 1)


def attention_flops_per_token(arch: Architecture, depth: int) -> float:
    """Q·K and scores·V for one token attending over ``depth`` cached tokens, all layers."""
    width = arch.heads * (arch.qk_nope_dim + arch.qk_rope_dim if arch.is_mla else arch.head_dim)
    return sum(4 * width * arch.cached_tokens(i, depth) for i in range(arch.layers))


def kv_read_bytes(arch: Architecture, depth: int, kv_type: str) -> float:
    """KV bytes one sequence's decode step reads at ``depth`` tokens of context."""
    element = kv_bytes_per_element(kv_type)
    return sum(arch.kv_elements_per_token(i) * arch.cached_tokens(i, depth) * element
               for i in range(arch.layers))


def step_weight_bytes(arch: Architecture, batch: int, *, quant: Quant | None,
                      model_file: ModelFile | None) -> float:
    """Weight bytes one decode step reads, from the file's real tensors when there is one."""
    if quant is not None or model_file is None:
        assert quant is not None
        return active_weight_bytes(arch, quant, batch)
    # The file's own bytes: the blocks scaled by the share a step touches (all of them for a
    # dense model, the routed experts for MoE), plus the embedding only when it doubles as
    # the LM head (otherwise a step reads one row of it; output.weight is among the blocks).
    reference = Quant("reference", 8.0, 8.0, "bf16", "uniform rate, for shares only")
    lm_head = arch.vocab * arch.hidden
    touched = active_weight_bytes(arch, reference, batch) - lm_head
    share = min(1.0, touched / max(arch.block_params(), 1))
    body = model_file.weight_bytes - model_file.embedding_bytes
    return body * share + (model_file.embedding_bytes if arch.tied else 0)


def speed(arch: Architecture, device: Accelerator, runtime: Runtime, *,
          quant: Quant | None = None, model_file: ModelFile | None = None,
          depth: int | None = None) -> Speed:
    """Predicted decode and prefill tok/s on one ``device`` (a layer split across several
    devices runs them one after the other, so one device's speeds apply)."""
    batch = runtime.batch
    position = depth if depth is not None else (runtime.prompt_tokens or 0)
    weights = step_weight_bytes(arch, batch, quant=quant, model_file=model_file)
    step_bytes = weights + batch * kv_read_bytes(arch, position, runtime.kv_type)
    dtype = quant.compute_dtype if quant is not None else "bf16"
    if device.kind == "cpu":
        dtype = "fp32"  # llama.cpp's CPU path: quantized dot products, f32 accumulation
    peak = device.flops(dtype) * COMPUTE_EFFICIENCY.get(device.kind, 0.4)
    flops_token = 2 * arch.active_params + attention_flops_per_token(arch, position)
    bits = bits_per_weight(arch, quant=quant, model_file=model_file)
    memory_time = step_bytes / (device.memory_bandwidth
                                * decode_bandwidth_efficiency(device, bits))
    compute_time = batch * flops_token / peak
    decode = batch / max(memory_time, compute_time)

    prompt = runtime.prompt_tokens or runtime.ubatch
    # llama.cpp computes logits for a prompt's last token only: the LM head runs once per
    # prompt, not once per token (for a 262k vocabulary it is most of a small model's FLOPs).
    lm_head = arch.vocab * arch.hidden
    prefill_flops = (2 * (arch.active_params - lm_head) + 2 * lm_head / prompt
                     + attention_flops_per_token(arch, prompt // 2))
    chunk = min(prompt, runtime.ubatch)
    all_weights = float(model_file.weight_bytes) if model_file and not quant else (
        weight_bytes(arch, quant) if quant else weights)
    prefill_compute = peak / prefill_flops
    prefill_memory = chunk * device.memory_bandwidth * _bandwidth_efficiency(device) / all_weights
    return Speed(
        decode_tokens_per_s=decode,
        prefill_tokens_per_s=min(prefill_compute, prefill_memory),
        decode_bytes_per_step=step_bytes,
        decode_bound="memory" if memory_time >= compute_time else "compute",
        prefill_bound="compute" if prefill_compute <= prefill_memory else "memory",
    )

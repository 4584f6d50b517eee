"""``deskai plan train``: FLOPs, the best parallel layout, MFU, days, GPU-hours and energy.

FLOPs are ``6 N D`` (N: parameters active per token, so a mixture of experts counts only its
routed experts) plus causal attention, ``6 L S d_attn`` per token. The layout search tries
every tensor (TP, within a node), pipeline (PP), context (CP) and data (DP) parallel split of
the GPUs, each ZeRO stage and with or without full activation recomputation, keeps those
that fit in memory, and picks the fastest by a stated model of one training step:

    step = compute x recompute x (1 + pipeline bubble) + exposed communication

- compute: model FLOPs / (GPUs x dense peak x MATMUL_EFFICIENCY);
- recompute: full recomputation runs the forward twice (x 4/3);
- bubble: ``(pp - 1) / microbatches`` (1F1B schedule, one sequence per micro-batch);
- TP: four all-reduces of the layer's activations per layer and micro-batch, over NVLink
  (exposed: Megatron cannot hide them);
- DP: a gradient all-reduce (ZeRO-3 adds parameter all-gathers, x 1.5) over the scale-out
  network, DP_OVERLAP of it hidden behind the backward pass;
- CP: K/V all-gathers per layer, CP_OVERLAP hidden behind attention.

Memory per GPU: 16 bytes per parameter for mixed-precision Adam (2 weights, 2 grads, 12
optimizer) divided by TP x PP, and by DP for what the ZeRO stage shards; activations per
layer ``34 S h / (TP x CP)`` bytes (Korthikanti et al. 2022, sequence parallel, flash
attention) or ``2 S h`` with full recomputation, times the layers a 1F1B first stage holds.
Expert parallelism and interleaved schedules are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from deskai.errors import InvalidInputError
from deskai.hardware.catalog import System
from deskai.planner.architectures import Architecture

#: Fraction of dense peak a whole transformer layer reaches: large BF16 GEMMs run at ~75-80%
#: of peak on H100, attention, norms and element-wise kernels well below; 0.6 is the stated
#: layer average (not fitted; docs/planner.md compares it with published MFU tables).
MATMUL_EFFICIENCY = 0.6
#: Share of the DP gradient traffic hidden behind the backward pass.
DP_OVERLAP = 0.8
#: Share of context-parallel K/V traffic hidden behind attention compute.
CP_OVERLAP = 0.5
#: Memory kept free per GPU for the framework, NCCL buffers and fragmentation.
MEMORY_HEADROOM = 0.9
#: Whole-system power per GPU relative to the GPU's TDP: a DGX H100 draws 10.2 kW for
#: 8 x 700 W GPUs (PRODUCT.md), i.e. 1.82x; applied to every GPU type. Facility PUE excluded.
SYSTEM_POWER_FACTOR = 10.2e3 / (8 * 700)
#: Default global batch: 16M tokens, Llama 3 405B's pre-training batch (arXiv 2407.21783 §3.4).
DEFAULT_GLOBAL_BATCH_TOKENS = 16 * 2**20

BYTES_PER_PARAM = {"weights": 2, "grads": 2, "optimizer": 12}
TP_SIZES = (1, 2, 4, 8, 16, 32, 64, 72)
POWERS_OF_TWO = tuple(2**i for i in range(0, 9))


@dataclass(frozen=True, slots=True)
class Layout:
    tp: int
    pp: int
    dp: int
    cp: int
    zero: int
    recompute: bool

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp


@dataclass(frozen=True, slots=True)
class TrainPlan:
    model: str
    gpu: str
    gpus: int
    tokens: float
    seq: int
    global_batch_tokens: int
    total_flops: float
    layout: Layout
    mfu: float
    tflops_per_gpu: float
    step_seconds: float
    days: float
    gpu_hours: float
    energy_mwh: float
    memory_per_gpu_bytes: float
    layouts_searched: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "gpu": self.gpu, "gpus": self.gpus, "tokens": self.tokens,
            "seq": self.seq, "global_batch_tokens": self.global_batch_tokens,
            "total_flops": self.total_flops,
            "layout": {"tp": self.layout.tp, "pp": self.layout.pp, "dp": self.layout.dp,
                       "cp": self.layout.cp, "zero_stage": self.layout.zero,
                       "recompute": "full" if self.layout.recompute else "none",
                       "gpus_used": self.layout.gpus},
            "mfu": round(self.mfu, 4), "tflops_per_gpu": round(self.tflops_per_gpu, 1),
            "step_seconds": round(self.step_seconds, 3), "days": round(self.days, 2),
            "gpu_hours": round(self.gpu_hours), "energy_mwh": round(self.energy_mwh, 1),
            "memory_per_gpu_bytes": round(self.memory_per_gpu_bytes),
            "layouts_searched": self.layouts_searched,
        }


def attention_dim(arch: Architecture) -> int:
    return arch.heads * (arch.qk_nope_dim + arch.qk_rope_dim if arch.is_mla else arch.head_dim)


def flops_per_token(arch: Architecture, seq: int) -> float:
    """Training FLOPs per token: 6 x active parameters + causal attention (6 L S d / 2 x 2)."""
    return 6 * arch.active_params + 6 * arch.layers * seq * attention_dim(arch)


def training_flops(arch: Architecture, tokens: float, seq: int) -> float:
    return tokens * flops_per_token(arch, seq)


def memory_per_gpu(arch: Architecture, layout: Layout, seq: int, microbatches: int) -> float:
    """Bytes one GPU holds: sharded weights/grads/optimizer plus in-flight activations."""
    shard = layout.tp * layout.pp
    params = arch.params / shard
    weights = params * BYTES_PER_PARAM["weights"] / (layout.dp if layout.zero >= 3 else 1)
    grads = params * BYTES_PER_PARAM["grads"] / (layout.dp if layout.zero >= 2 else 1)
    optimizer = params * BYTES_PER_PARAM["optimizer"] / (layout.dp if layout.zero >= 1 else 1)
    tokens = seq / layout.cp
    per_layer = (2 * tokens * arch.hidden if layout.recompute
                 else 34 * tokens * arch.hidden / layout.tp)
    in_flight = min(layout.pp, microbatches)  # 1F1B: the first stage holds pp micro-batches
    activations = per_layer * math.ceil(arch.layers / layout.pp) * in_flight
    logits = 4 * tokens * arch.vocab / layout.tp  # f32 logits on the last stage
    return weights + grads + optimizer + activations + logits


def step_seconds(arch: Architecture, layout: Layout, system: System, seq: int,
                 global_batch_tokens: int, dtype: str) -> tuple[float, int]:
    """Seconds per optimizer step under ``layout``, and the micro-batches per pipeline."""
    device = system.accelerator
    sequences = max(global_batch_tokens // seq, 1)
    microbatches = max(sequences // layout.dp, 1)
    step_tokens = microbatches * layout.dp * seq
    peak = device.flops(dtype) * MATMUL_EFFICIENCY
    compute = flops_per_token(arch, seq) * step_tokens / (layout.gpus * peak)
    if layout.recompute:
        compute *= 4 / 3
    compute *= 1 + (layout.pp - 1) / microbatches
    return compute + _exposed_comm(arch, layout, system, seq, microbatches), microbatches


def _link(system: System, group_span: int) -> float:
    """Per-GPU bandwidth of a group spanning ``group_span`` consecutive GPUs."""
    device = system.accelerator
    inside = group_span <= system.gpus_per_node and device.intra_node_bandwidth > 0
    bandwidth = device.intra_node_bandwidth if inside else device.inter_node_bandwidth
    return bandwidth if bandwidth > 0 else max(device.intra_node_bandwidth,
                                               device.inter_node_bandwidth, 1e9)


def _exposed_comm(arch: Architecture, layout: Layout, system: System, seq: int,
                  microbatches: int) -> float:
    tokens = seq / layout.cp
    layers_here = math.ceil(arch.layers / layout.pp)
    seconds = 0.0
    if layout.tp > 1:  # 4 all-reduces (2 fwd, 2 bwd) of bf16 activations per layer
        size = 2 * tokens * arch.hidden
        ring = 2 * (layout.tp - 1) / layout.tp * size
        seconds += 4 * layers_here * microbatches * ring / _link(system, layout.tp)
    if layout.cp > 1:  # all-gather K and V per layer, forward and backward
        kv = 2 * 2 * tokens * arch.kv_heads * arch.head_dim / layout.tp
        gather = (layout.cp - 1) * kv * 2
        seconds += ((1 - CP_OVERLAP) * layers_here * microbatches * gather
                    / _link(system, layout.tp * layout.cp))
    if layout.pp > 1:  # send activations forward and gradients back at each stage boundary
        size = 2 * tokens * arch.hidden / layout.tp
        seconds += 2 * (microbatches + layout.pp - 1) * size / _link(
            system, layout.tp * layout.cp * layout.pp)
    if layout.dp > 1:
        grads = 2 * arch.params / (layout.tp * layout.pp)
        volume = 2 * (layout.dp - 1) / layout.dp * grads * (1.5 if layout.zero >= 3 else 1)
        seconds += (1 - DP_OVERLAP) * volume / _link(system, layout.gpus)
    return seconds


def candidate_layouts(arch: Architecture, system: System, seq: int) -> list[Layout]:
    """Every split of the GPUs the search tries (a few thousand at most)."""
    gpus = system.total_devices if system.extra else system.count
    layouts: list[Layout] = []
    tps = [t for t in TP_SIZES if t <= max(system.gpus_per_node, 1) and arch.heads % t == 0]
    pps = [p for p in POWERS_OF_TWO if p <= arch.layers]
    cps = [c for c in POWERS_OF_TWO if c == 1 or seq // c >= 1024]
    for tp in tps:
        for pp in pps:
            for cp in cps:
                dp = gpus // (tp * pp * cp)
                if dp < 1:
                    continue
                for zero in (0, 1, 2, 3):
                    if zero and dp == 1:
                        continue
                    for recompute in (False, True):
                        layouts.append(Layout(tp, pp, dp, cp, zero, recompute))
    return layouts


def plan_train(arch: Architecture, system: System, *, tokens: float, gpus: int | None = None,
               seq: int = 8192, global_batch_tokens: int | None = None,
               dtype: str = "bf16") -> TrainPlan:
    """The fastest layout that fits, with its MFU, duration and energy."""
    _check_positive(tokens=tokens, seq=seq, gpus=gpus if gpus is not None else 1,
                    global_batch_tokens=global_batch_tokens or 1)
    if gpus is not None:
        from dataclasses import replace

        system = replace(system, count=gpus, extra=())
    batch_tokens = global_batch_tokens or DEFAULT_GLOBAL_BATCH_TOKENS
    device = system.accelerator
    budget = device.memory_bytes * MEMORY_HEADROOM
    best: tuple[float, Layout, int, float] | None = None
    layouts = candidate_layouts(arch, system, seq)
    sequences = max(batch_tokens // seq, 1)
    for layout in layouts:
        if layout.dp > sequences:  # every data-parallel rank needs a sequence of the batch
            continue
        step, microbatches = step_seconds(arch, layout, system, seq, batch_tokens, dtype)
        memory = memory_per_gpu(arch, layout, seq, microbatches)
        if memory > budget:
            continue
        throughput = microbatches * layout.dp * seq / step  # tokens per second
        if best is None or throughput > best[0]:
            best = (throughput, layout, microbatches, memory)
    if best is None:
        raise InvalidInputError(
            f"{arch.name} does not fit on {system.count} x {device.key} in any layout "
            f"searched ({len(layouts)}); try more GPUs or a shorter --seq", param="gpus")
    throughput, layout, microbatches, memory = best
    total = training_flops(arch, tokens, seq)
    achieved = flops_per_token(arch, seq) * throughput / layout.gpus
    seconds = tokens / throughput
    gpu_hours = seconds / 3600 * layout.gpus
    return TrainPlan(
        model=arch.name, gpu=device.key, gpus=system.count, tokens=tokens, seq=seq,
        global_batch_tokens=microbatches * layout.dp * seq, total_flops=total, layout=layout,
        mfu=achieved / device.flops(dtype), tflops_per_gpu=achieved / 1e12,
        step_seconds=microbatches * layout.dp * seq / throughput, days=seconds / 86400,
        gpu_hours=gpu_hours,
        energy_mwh=gpu_hours * device.power_w * SYSTEM_POWER_FACTOR / 1e6,
        memory_per_gpu_bytes=memory, layouts_searched=len(layouts),
    )


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise InvalidInputError(f"{name.replace('_', '-')} must be a positive number, "
                                    f"got {value:g}", param=name)

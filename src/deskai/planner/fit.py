"""``deskai fit``: will a model fit on a machine, with which quantization and context, how fast.

Combines the memory model (``memory``) and the roofline (``roofline``) over an architecture
and a target system. A system of several devices (a DGX node, two linked Sparks) is assumed
to split the model by layers, as llama.cpp does by default: memory adds up, speed is one
device's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deskai.errors import InvalidInputError
from deskai.hardware.catalog import Accelerator, System
from deskai.planner.architectures import Architecture, catalog_models
from deskai.planner.memory import MemoryBreakdown, Runtime, memory_breakdown
from deskai.planner.placement import Device, Placement, place
from deskai.planner.quant import QUALITY_ORDER, Quant, get_quant
from deskai.planner.readers import ModelFile
from deskai.planner.roofline import Speed, speed


@dataclass(frozen=True, slots=True)
class FitResult:
    model: str
    hardware: str
    quant: str
    context: int
    batch: int
    fits: bool
    max_context: int
    memory: MemoryBreakdown
    capacity_bytes: float
    speed: Speed
    params: int
    active_params: int
    placement: Placement | None = None  # llama.cpp's layers on the accelerator (None: a CPU)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "hardware": self.hardware, "fits": self.fits,
            "quant": self.quant, "context": self.context, "batch": self.batch,
            "max_context": self.max_context, "memory_bytes": self.memory.to_dict(),
            "resident_bytes": round(self.memory.resident),
            "capacity_bytes": round(self.capacity_bytes),
            "decode_tokens_per_s": round(self.speed.decode_tokens_per_s, 2),
            "prefill_tokens_per_s": round(self.speed.prefill_tokens_per_s, 2),
            "decode_bound": self.speed.decode_bound, "prefill_bound": self.speed.prefill_bound,
            "params": self.params, "active_params": self.active_params,
            "placement": self.placement.to_dict() if self.placement else None,
        }


def capacity_bytes(system: System) -> float:
    """Memory models may use across the system's devices (the OS's share left out)."""
    return system.accelerator.usable_memory_bytes * system.count + sum(
        a.usable_memory_bytes * n for a, n in system.extra)


def _runtime(device: Accelerator, context: int, batch: int, **knobs: Any) -> Runtime:
    knobs.setdefault("flash_attn", device.kind != "cpu")  # llama.cpp's -fa auto on GPUs
    return Runtime(context=context, batch=batch, device_kind=device.kind, **knobs)


def _needed(arch: Architecture, runtime: Runtime, quant: Quant | None, model_file: ModelFile |
            None, devices: int) -> MemoryBreakdown:
    memory = memory_breakdown(arch, runtime, quant=quant, model_file=model_file)
    if devices <= 1:
        return memory
    # every device of a layer split carries its own process / CUDA context
    return MemoryBreakdown(memory.weights, memory.kv_cache, memory.compute,
                           memory.overhead * devices, memory.resident)


def max_context(arch: Architecture, system: System, batch: int, quant: Quant | None,
                model_file: ModelFile | None, **knobs: Any) -> int:
    """The longest context (a multiple of 256, up to the model's own) that fits; 0 if none."""
    device, capacity = system.accelerator, capacity_bytes(system)

    def fits(context: int) -> bool:
        runtime = _runtime(device, context, batch, **knobs)
        return _needed(arch, runtime, quant, model_file, system.count).total <= capacity

    low, high = 0, arch.context // 256
    if high == 0 or not fits(256):
        return arch.context if high == 0 and fits(arch.context) else 0
    while low < high:  # binary search over multiples of 256: memory grows with context
        mid = (low + high + 1) // 2
        if fits(mid * 256):
            low = mid
        else:
            high = mid - 1
    return arch.context if fits(arch.context) else low * 256


def candidate_quants(arch: Architecture, device: Accelerator) -> list[Quant]:
    """Quantizations to try, best first: FP8/FP4 only where the device has those units."""
    names = [q for q in QUALITY_ORDER
             if get_quant(q).compute_dtype not in ("fp8", "fp4")
             or get_quant(q).compute_dtype in device.tflops or q == arch.native_quant]
    return [get_quant(q) for q in names]


def fit(model: Architecture | ModelFile, system: System, *, context: int | None = None,
        quant: str | None = None, batch: int = 1, **knobs: Any) -> FitResult:
    """The answer to ``deskai fit``: at ``context`` (default: 4096 capped by the model's)."""
    if batch <= 0:
        raise InvalidInputError(f"batch must be a positive number, got {batch}", param="batch")
    if context is not None and context <= 0:
        raise InvalidInputError(f"context must be a positive number, got {context}",
                                param="context")
    model_file = model if isinstance(model, ModelFile) else None
    arch = model_file.architecture if model_file else model  # type: ignore[union-attr]
    assert isinstance(arch, Architecture)
    wanted_context = context if context is not None else min(4096, arch.context)
    device = system.accelerator
    if quant is not None:
        choices: list[Quant | None] = [get_quant(quant)]
    elif model_file is not None:
        choices = [None]  # the file's own tensors
    elif arch.native_quant is not None:
        choices = [get_quant(arch.native_quant)]  # released in that format: nothing better
    else:
        choices = list(candidate_quants(arch, device))
    capacity = capacity_bytes(system)
    result: FitResult | None = None
    for choice in choices:
        result = _fit_one(arch, system, choice, model_file, wanted_context, batch, capacity,
                          **knobs)
        if result.fits:
            return result
    assert result is not None
    return result  # nothing fits: report the smallest format tried


def _fit_one(arch: Architecture, system: System, quant: Quant | None,
             model_file: ModelFile | None, context: int, batch: int, capacity: float,
             **knobs: Any) -> FitResult:
    device = system.accelerator
    runtime = _runtime(device, context, batch, **knobs)
    memory = _needed(arch, runtime, quant, model_file, system.count)
    quant_name = quant.name if quant else (model_file.quantization if model_file else "?")
    return FitResult(
        model=arch.name, hardware=system.key, quant=quant_name, context=context, batch=batch,
        fits=memory.total <= capacity,
        max_context=max_context(arch, system, batch, quant, model_file, **knobs),
        memory=memory, capacity_bytes=capacity,
        speed=speed(arch, device, runtime, quant=quant, model_file=model_file),
        params=arch.params, active_params=arch.active_params,
        placement=place(arch, runtime, _placement_device(system, capacity), quant=quant,
                        model_file=model_file) if device.kind != "cpu" else None,
    )


def _placement_device(system: System, capacity: float) -> Device:
    """The system's accelerators as one device, as llama.cpp splits layers across GPUs."""
    return Device(system.key, capacity, unified=system.accelerator.kind == "unified")


def rank_catalog(system: System, *, context: int | None = None, batch: int = 1) -> list[FitResult]:
    """Every catalog model's best fit on ``system``, those that fit first, biggest first."""
    results = [fit(arch, system, context=context, batch=batch)
               for arch in catalog_models().values()]
    return sorted(results, key=lambda r: (not r.fits, -r.params))


def quants_that_fit(arch: Architecture, system: System, *, context: int = 4096) -> list[str]:
    """Which formats let ``arch`` run on ``system`` at ``context`` (the 200B-in-128GB claim)."""
    return [q.name for q in candidate_quants(arch, system.accelerator)
            if _fit_one(arch, system, q, None, context, 1, capacity_bytes(system)).fits]

"""Which layers go on the GPU: llama.cpp's offload, chosen from the planner's memory model.

llama.cpp offloads the last ``n_gpu_layers`` of a model's repeating layers; one more than the
layer count offloads the output layer too ("all"). An offloaded layer keeps its weights and its
KV cache on the device (``offload_kqv``, on by default); a device with any layer also holds the
compute buffer and a CUDA context. Token embeddings stay in host memory: llama.cpp reads one
row per token on the CPU. ``place`` picks the most layers whose bytes fit the device with a
margin — Ollama's and llama-server's ``--fit`` question, answered layer by layer with the same
model ``deskai fit`` uses, so the two report the same numbers.

On a unified-memory device (DGX Spark's GB10, Apple silicon) the "device" is the host's
memory: offloading moves compute, not bytes, and everything fits when the model fits at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from deskai.errors import InvalidInputError
from deskai.planner.architectures import Architecture
from deskai.planner.memory import (
    CUDA_CONTEXT_BYTES,
    Runtime,
    compute_buffer_bytes,
    kv_bytes_per_element,
    kv_cells,
    memory_breakdown,
)
from deskai.planner.quant import Quant
from deskai.planner.readers import ModelFile

GpuLayers = int | Literal["auto", "all"]
MiB = 2**20
# kept free on the device: fragmentation, the driver, other processes' small allocations
MIN_MARGIN_BYTES = 512 * MiB
MARGIN_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class Device:
    """Where layers may go: a name, the memory free for the model, and whether it is the
    host's own memory (unified)."""

    name: str
    free_bytes: float
    unified: bool = False

    @property
    def usable_bytes(self) -> float:
        return self.free_bytes - max(MIN_MARGIN_BYTES, MARGIN_SHARE * self.free_bytes)


@dataclass(frozen=True, slots=True)
class Placement:
    """llama.cpp's ``n_gpu_layers`` for a model, and the bytes that puts on each side."""

    gpu_layers: int          # 0: CPU only; layers + 1: every layer and the output layer
    layers: int
    device_bytes: float      # weights, KV cache, compute buffer and context on the device
    host_bytes: float        # the rest, in host memory
    flash_attn: bool         # llama.cpp's -fa on a GPU (fewer bytes, faster attention)
    device: str | None = None
    note: str = ""
    unified: bool = False    # the device's bytes are host memory too

    @property
    def host_memory_bytes(self) -> float:
        """What the placement takes from host memory: the host share, and on a unified
        device the device share as well."""
        return self.host_bytes + (self.device_bytes if self.unified else 0.0)

    @property
    def kv_on_device(self) -> bool:
        return self.gpu_layers > 0

    def describe(self) -> str:
        where = (f"{min(self.gpu_layers, self.layers)}/{self.layers} layers"
                 f"{' + output' if self.gpu_layers > self.layers else ''} on {self.device}"
                 if self.gpu_layers else f"all {self.layers} layers on the CPU")
        sizes = (f"{self.device_bytes / MiB:,.0f} MiB on the device, "
                 if self.gpu_layers else "") + f"{self.host_bytes / MiB:,.0f} MiB in host memory"
        kv = "KV cache on the device" if self.kv_on_device else "KV cache in host memory"
        return f"{where}; {kv}; {sizes}" + (f" ({self.note})" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        return {"gpu_layers": self.gpu_layers, "layers": self.layers, "device": self.device,
                "kv_on_device": self.kv_on_device, "flash_attn": self.flash_attn,
                "device_bytes": round(self.device_bytes), "host_bytes": round(self.host_bytes),
                "note": self.note}


def parse_gpu_layers(value: str) -> GpuLayers:
    """``--gpu-layers``: ``auto``, ``all`` or a number of layers."""
    if value in ("auto", "all"):
        return value  # type: ignore[return-value]
    if value.isdigit():
        return int(value)
    raise InvalidInputError(f"--gpu-layers takes auto, all or a number, not {value!r}",
                            param="gpu_layers")


def place(arch: Architecture, runtime: Runtime, device: Device | None, *,
          requested: GpuLayers = "auto", model_file: ModelFile | None = None,
          quant: Quant | None = None, offload_supported: bool = True) -> Placement:
    """The placement of ``arch`` run as ``runtime``: as many layers as ``requested`` allows and
    the device holds (``auto``: as many as fit; ``all`` or N: that many, even past the fit)."""
    if device is None or requested == 0 or not offload_supported:
        note = ""
        if requested != 0 and not offload_supported:
            note = "this llama.cpp build cannot offload to a GPU; `deskai hw` says how to fix it"
        elif requested != 0 and device is None:
            note = "no GPU found"
        return _on_cpu(arch, runtime, model_file, quant, note)
    gpu_runtime = replace(runtime, flash_attn=True, device_kind="gpu")
    sizes = _LayerBytes.of(arch, gpu_runtime, model_file, quant)
    most = arch.layers + 1
    if requested == "auto":
        layers = max((n for n in range(most + 1)
                      if device.unified or sizes.on_device(n) <= device.usable_bytes), default=0)
    else:
        layers = most if requested == "all" else min(int(requested), most)
    if layers == 0:
        return _on_cpu(arch, runtime, model_file, quant,
                       f"not one layer fits the {device.free_bytes / MiB:,.0f} MiB free on "
                       f"{device.name}")
    on_device = sizes.on_device(layers)
    note = "unified memory: the device's bytes are host memory" if device.unified else ""
    return Placement(layers, arch.layers, on_device, sizes.total - on_device, True,
                     device.name, note, unified=device.unified)


def _on_cpu(arch: Architecture, runtime: Runtime, model_file: ModelFile | None,
            quant: Quant | None, note: str) -> Placement:
    """All on the CPU: the host holds what the process will have resident (weights are
    memory-mapped, and only the compute buffer's touched part counts)."""
    host = memory_breakdown(arch, runtime, quant=quant, model_file=model_file).resident
    return Placement(0, arch.layers, 0.0, host, runtime.flash_attn, None, note)


@dataclass(frozen=True, slots=True)
class _LayerBytes:
    """Bytes by layer, as llama.cpp splits them between the host and a device."""

    per_layer: list[float]   # weights + KV cache of each repeating layer
    output: float            # the output layer (a duplicate of the embeddings when tied)
    compute: float           # the device's compute buffer
    total: float             # everything, wherever it goes

    @classmethod
    def of(cls, arch: Architecture, runtime: Runtime, model_file: ModelFile | None,
           quant: Quant | None) -> _LayerBytes:
        memory = memory_breakdown(arch, runtime, quant=quant, model_file=model_file)
        embeddings = (float(model_file.embedding_bytes) if model_file is not None
                      else memory.weights * arch.vocab * arch.hidden / max(arch.params, 1))
        output = embeddings  # untied: its own matrix of the same size; tied: a device copy
        repeating = max(memory.weights - embeddings - (0.0 if arch.tied else output), 0.0)
        element = kv_bytes_per_element(runtime.kv_type)
        kv = [element * arch.kv_elements_per_token(i) * kv_cells(arch, i, runtime)
              for i in range(arch.layers)]
        per_layer = [repeating / max(arch.layers, 1) + kv_layer for kv_layer in kv]
        # llama.cpp reserves the graph for one logits row per sequence, not the worst case of
        # every token an output (a 262k vocabulary would add half a GiB that is never used)
        compute = compute_buffer_bytes(arch, runtime, outputs=runtime.batch) \
            + CUDA_CONTEXT_BYTES
        return cls(per_layer, output, compute, memory.total + CUDA_CONTEXT_BYTES)

    def on_device(self, layers: int) -> float:
        """Bytes on the device with the last ``layers`` layers offloaded (all + 1: output)."""
        if layers <= 0:
            return 0.0
        repeating = sum(self.per_layer[len(self.per_layer) - min(layers, len(self.per_layer)):])
        return repeating + (self.output if layers > len(self.per_layer) else 0.0) + self.compute

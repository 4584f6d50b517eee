"""Where a training run computes, and in which precision.

``--device auto`` takes the GPU when torch sees one, else the CPU; ``cpu``, ``cuda`` and
``cuda:N`` choose. On a GPU the frozen base weights are bfloat16 — half the memory of float32
and the tensor cores' fast path — while the LoRA weights, their gradients and AdamW's state stay
float32: an update is tiny next to its weight, and bf16's 8 bits of precision would round many of
them away. A GPU without bf16 (older than Ampere) keeps float32, as the CPU always does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from deskai.errors import InvalidInputError, TrainingError

_CUDA = re.compile(r"cuda(?::(\d+))?")
#: Compute capability major from which GPUs have bf16 in hardware (Ampere, 8.0); older ones
#: only emulate it.
BF16_MAJOR = 8


@dataclass(frozen=True, slots=True)
class TrainDevice:
    device: str  # a torch device: "cpu", "cuda:0"
    base_dtype: str  # torch dtype of the frozen base weights: "float32" or "bfloat16"


CPU = TrainDevice("cpu", "float32")


def choose_device(requested: str = "auto", *,
                  cuda_capabilities: Sequence[tuple[int, int]] = ()) -> TrainDevice:
    """The device and base precision for ``requested`` (auto, cpu, cuda, cuda:N), given the
    compute capability of each GPU torch sees (none: no usable CUDA). A GPU asked for and
    absent is a TrainingError, raised before any weights load."""
    wanted = requested.strip().lower()
    if wanted == "cpu" or (wanted == "auto" and not cuda_capabilities):
        return CPU
    match = _CUDA.fullmatch("cuda" if wanted == "auto" else wanted)
    if match is None:
        raise InvalidInputError(f"--device must be auto, cpu, cuda or cuda:N, got {requested!r}",
                                param="device")
    if not cuda_capabilities:
        raise TrainingError(f"--device {wanted}: torch sees no CUDA GPU (a CPU build of torch, "
                            "or no NVIDIA driver); use --device cpu, or see docs/gpu.md")
    index = int(match.group(1) or 0)
    if index >= len(cuda_capabilities):
        raise TrainingError(f"--device {wanted}: torch sees {len(cuda_capabilities)} CUDA "
                            f"GPU(s), cuda:0 to cuda:{len(cuda_capabilities) - 1}")
    major, _ = cuda_capabilities[index]
    return TrainDevice(f"cuda:{index}", "bfloat16" if major >= BF16_MAJOR else "float32")


def pick_device(requested: str = "auto") -> TrainDevice:
    """``choose_device`` with the GPUs the installed torch sees."""
    import torch

    capabilities = ([torch.cuda.get_device_capability(i)
                     for i in range(torch.cuda.device_count())]
                    if torch.cuda.is_available() else [])
    return choose_device(requested, cuda_capabilities=capabilities)

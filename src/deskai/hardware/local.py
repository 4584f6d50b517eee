"""This machine: CPU model, cores, RAM, measured memory bandwidth, GPUs.

Memory bandwidth is measured, not looked up: a large numpy copy reads and writes every byte
once, so bytes moved over the best of a few runs is what a memory-bound decode loop can expect.
GPUs come from ``deskai.hardware.gpu``: NVIDIA ones through NVML (nvidia-ml-py) when a driver
answers, else Apple silicon's; without either the list is simply empty.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

from deskai.hardware.catalog import Accelerator, System, load_catalog
from deskai.hardware.gpu import GPUInfo, detect_gpus
from deskai.hardware.gpu import nvidia_gpus as nvml_gpus

#: Bytes copied per bandwidth run: far beyond any L3 cache, small enough to take ~0.1 s.
BANDWIDTH_TEST_BYTES = 256 * 2**20
#: CPU FLOPs per core per cycle assumed for this machine (FP32, AVX2: 2 FMA units x 8 lanes x 2).
FLOPS_PER_CORE_CYCLE = 32
#: Side of the square f32 matrices of the FLOP-rate run: fits in L2/L3, ~1 ms per product.
MATMUL_TEST_SIZE = 512
#: Clock assumed when the OS does not report one.
FALLBACK_CLOCK_HZ = 3.0e9


@dataclass(frozen=True, slots=True)
class LocalMachine:
    cpu_model: str
    physical_cores: int
    logical_cores: int
    memory_bytes: int
    memory_available_bytes: int
    memory_bandwidth: float  # bytes/s, measured
    clock_hz: float
    gpus: tuple[GPUInfo, ...] = field(default_factory=tuple)
    matmul_flops: float = 0.0  # f32 FLOP/s of a numpy (BLAS) matmul on all cores; 0: not measured
    gpu_driver_version: str | None = None  # the NVIDIA driver's, "580.95.05"
    cuda_driver_version: str | None = None  # the newest CUDA that driver runs, "13.0"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_model": self.cpu_model,
            "physical_cores": self.physical_cores,
            "logical_cores": self.logical_cores,
            "memory_bytes": self.memory_bytes,
            "memory_available_bytes": self.memory_available_bytes,
            "memory_bandwidth_bytes_per_s": round(self.memory_bandwidth),
            "matmul_flops_per_s": round(self.matmul_flops),
            "gpus": [g.to_dict() for g in self.gpus],
            "gpu_driver_version": self.gpu_driver_version,
            "cuda_driver_version": self.cuda_driver_version,
        }

    def as_accelerator(self, threads: int | None = None) -> Accelerator:
        """This machine's CPU as a planner device (the planner's default target).

        ``threads`` caps the cores used for compute, as llama.cpp's ``n_threads`` does.
        """
        cores = min(self.physical_cores, threads) if threads else self.physical_cores
        if self.matmul_flops > 0:  # measured on all cores; a thread cap takes its share
            fp32 = self.matmul_flops * cores / self.physical_cores / 1e12
            flops_source = f"measured: numpy f32 matmul, {cores} of {self.physical_cores} cores"
        else:
            fp32 = cores * self.clock_hz * FLOPS_PER_CORE_CYCLE / 1e12
            flops_source = f"derived: {cores} cores x clock x {FLOPS_PER_CORE_CYCLE}"
        return Accelerator(
            key="local", name=f"this machine ({self.cpu_model})", kind="cpu",
            memory_bytes=float(self.memory_bytes), memory_bandwidth=self.memory_bandwidth,
            tflops={"fp32": fp32, "bf16": fp32}, intra_node_bandwidth=0.0,
            inter_node_bandwidth=0.0, power_w=0.0,
            os_reserved_bytes=float(self.memory_bytes - self.memory_available_bytes),
            sources={"memory_bandwidth_gbs": "measured: numpy copy benchmark",
                     "tflops_fp32": flops_source},
        )


def available_memory_bytes() -> int:
    """Bytes of memory the machine can still hand out (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_clock_hz() -> float:
    """The fastest clock psutil reports (max, else current), else a stated fallback."""
    import psutil

    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):
        freq = None
    if freq is not None:
        mhz = freq.max or freq.current
        if mhz:
            return float(mhz) * 1e6
    return FALLBACK_CLOCK_HZ


def measure_memory_bandwidth(nbytes: int = BANDWIDTH_TEST_BYTES, repeats: int = 3) -> float:
    """Bytes/s of a large array copy (read + write), best of ``repeats`` runs."""
    import numpy as np

    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch every page first so the runs time memory, not page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


def measure_matmul_flops(size: int = MATMUL_TEST_SIZE, repeats: int = 5) -> float:
    """FLOP/s of an f32 ``size x size`` matmul through numpy's BLAS (all cores), best run.

    This is the CPU's sustained dense rate (close to cores x clock x FMA width); llama.cpp's
    quantized kernels reach a stated fraction of it (planner/roofline.py).
    """
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def nvidia_gpus() -> tuple[GPUInfo, ...]:
    """NVIDIA GPUs through NVML, without the driver versions (``gpu.nvidia_gpus`` has them).

    A unified-memory part (the GB10) reports the system memory, with ``unified`` set.
    """
    return nvml_gpus().devices


def detect(measure_bandwidth: bool = True) -> LocalMachine:
    """Describe this machine; ``measure_bandwidth=False`` skips the ~0.5 s copy and matmul
    benchmarks."""
    import psutil

    memory = psutil.virtual_memory()
    gpus = detect_gpus(memory=(int(memory.total), int(memory.available)))
    return LocalMachine(
        cpu_model=cpu_model(),
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        memory_bytes=int(memory.total),
        memory_available_bytes=int(memory.available),
        memory_bandwidth=measure_memory_bandwidth() if measure_bandwidth else 0.0,
        clock_hz=cpu_clock_hz(),
        gpus=gpus.devices,
        matmul_flops=measure_matmul_flops() if measure_bandwidth else 0.0,
        gpu_driver_version=gpus.driver_version,
        cuda_driver_version=gpus.cuda_driver_version,
    )


def target_system(on: str | None, *, threads: int) -> System:
    """The system ``--on`` names in the catalog, or this machine (its CPU, with ``threads``):
    what ``deskai fit`` and the agents' ``fit`` tool plan for."""
    if on:
        return load_catalog().system(on)
    device = detect().as_accelerator(threads=threads)
    return System(key="local", name=device.name, accelerator=device, count=1, gpus_per_node=1)

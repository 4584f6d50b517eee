"""GPUs on this machine, and whether the installed llama.cpp can use them.

NVIDIA GPUs come from NVML (nvidia-ml-py, module ``pynvml``): name, memory, compute capability,
driver and CUDA driver versions. Apple silicon comes from the OS. A GPU whose memory is the
system's is *unified*: Apple silicon, and the DGX Spark's GB10, for which NVML reports no memory
of its own (``nvmlDeviceGetMemoryInfo`` fails with NOT_SUPPORTED); its figures are then the
system memory's, as the catalog describes the GB10 (kind "unified", 128 GB shared with the OS).

Whether llama-cpp-python can offload is llama.cpp's own answer (``llama_supports_gpu_offload``);
a GPU with a build that cannot use it gets the one command that rebuilds it (docs/gpu.md).

The NVML and llama modules are parameters (default: the real ones), so tests drive every path
with fakes on machines without a GPU.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: CUDA architecture of the GB10 (DGX Spark): compute capability 12.1, sm_121. A build for it
#: names it explicitly, as NVIDIA's DGX Spark llama.cpp playbook does.
GB10_CUDA_ARCH = "121"
#: Parts whose GPU has no memory of its own even when NVML answers the memory query.
UNIFIED_NVIDIA_PARTS = ("GB10",)

#: (total, available) bytes of system memory.
SystemMemory = tuple[int, int]


@dataclass(frozen=True, slots=True)
class GPUInfo:
    index: int
    name: str
    memory_bytes: int  # the GPU's own memory, or the system's when ``unified``
    memory_used_bytes: int
    power_limit_w: float | None
    memory_free_bytes: int = 0
    compute_capability: str | None = None  # CUDA "major.minor" ("8.9", "12.1"); None: not CUDA
    unified: bool = False  # memory shared with the CPU: the figures are the system memory's
    vendor: str = "nvidia"  # "nvidia" or "apple"

    @property
    def is_gb10(self) -> bool:
        return self.vendor == "nvidia" and "GB10" in self.name.upper()

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "vendor": self.vendor,
                "memory_bytes": self.memory_bytes, "memory_used_bytes": self.memory_used_bytes,
                "memory_free_bytes": self.memory_free_bytes, "unified": self.unified,
                "compute_capability": self.compute_capability,
                "power_limit_w": self.power_limit_w}


@dataclass(frozen=True, slots=True)
class GPUs:
    """The GPUs found, and the NVIDIA driver that runs them (None without one)."""

    devices: tuple[GPUInfo, ...] = ()
    driver_version: str | None = None  # "580.95.05"
    cuda_driver_version: str | None = None  # the newest CUDA the driver runs: "13.0"


@dataclass(frozen=True, slots=True)
class OffloadStatus:
    """Can the installed llama-cpp-python put work on this machine's GPU, and if not, the fix."""

    build_offloads: bool | None  # llama_supports_gpu_offload(); None: llama-cpp-python unusable
    fix: str | None  # the command that rebuilds it with GPU support; None: nothing to fix

    def to_dict(self) -> dict[str, Any]:
        return {"build_offloads": self.build_offloads, "fix": self.fix}


def system_memory() -> SystemMemory:
    import psutil

    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)


def nvidia_gpus(nvml: Any = None, memory: SystemMemory | None = None) -> GPUs:
    """NVIDIA GPUs through NVML; none when nvidia-ml-py or a driver is missing.

    ``nvml`` is the ``pynvml`` module (imported when None); ``memory`` the system memory a
    unified GPU reports (read when needed).
    """
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return GPUs()
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded...: no GPU to report
        return GPUs()
    try:
        devices = tuple(_nvidia_gpu(nvml, i, memory) for i in range(nvml.nvmlDeviceGetCount()))
        return GPUs(devices, _optional(nvml, lambda: _text(nvml.nvmlSystemGetDriverVersion())),
                    _optional(nvml, lambda: _cuda_version(nvml.nvmlSystemGetCudaDriverVersion())))
    except nvml.NVMLError:  # a GPU fell off the bus mid-query: report none rather than crash
        return GPUs()
    finally:
        nvml.nvmlShutdown()


def _nvidia_gpu(nvml: Any, index: int, memory: SystemMemory | None) -> GPUInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = _text(nvml.nvmlDeviceGetName(handle))
    power = _optional(nvml, lambda: nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000)
    capability = _optional(nvml, lambda: "{}.{}".format(
        *nvml.nvmlDeviceGetCudaComputeCapability(handle)))
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
    except nvml.NVMLError:  # NOT_SUPPORTED on the GB10: it has no memory of its own
        info = None
    if info is None or not info.total or any(p in name.upper() for p in UNIFIED_NVIDIA_PARTS):
        total, available = memory or system_memory()
        return GPUInfo(index, name, total, total - available, power, available, capability,
                       unified=True)
    return GPUInfo(index, name, int(info.total), int(info.used), power, int(info.free),
                   capability)


def _optional(nvml: Any, query: Any) -> Any:
    """A query not every board or driver answers (power limit, versions): None when it fails."""
    try:
        return query()
    except nvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_version(value: int) -> str:
    """NVML's CUDA version integer (13000 = 1000 x major + 10 x minor) as "13.0"."""
    return f"{value // 1000}.{value % 1000 // 10}"


def apple_gpus(memory: SystemMemory | None = None) -> GPUs:
    """Apple silicon's GPU, whose memory is the system's; none on any other machine."""
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return GPUs()
    total, available = memory or system_memory()
    name = _sysctl("machdep.cpu.brand_string") or "Apple silicon"  # "Apple M4 Max"
    return GPUs((GPUInfo(0, name, total, total - available, None, available, unified=True,
                         vendor="apple"),))


def _sysctl(key: str) -> str | None:
    try:
        done = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5,
                              check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def detect_gpus(nvml: Any = None, memory: SystemMemory | None = None) -> GPUs:
    """This machine's GPUs: NVIDIA ones through NVML, else Apple silicon's, else none."""
    found = nvidia_gpus(nvml, memory)
    return found if found.devices else apple_gpus(memory)


def build_supports_offload(llama: Any = None) -> bool | None:
    """llama.cpp's ``llama_supports_gpu_offload()`` for the installed llama-cpp-python.

    ``llama`` is the ``llama_cpp`` module (imported when None). None: it cannot be loaded.
    """
    llama = llama or _import_llama()
    return None if llama is None else bool(llama.llama_supports_gpu_offload())


def _import_llama() -> Any:
    try:
        import llama_cpp
    except (ImportError, OSError, RuntimeError):  # missing, or its libllama fails to load
        return None
    return llama_cpp


def offload_fix(gpus: Sequence[GPUInfo], build_offloads: bool | None,
                version: str | None = None) -> str | None:
    """The command that rebuilds llama-cpp-python for ``gpus``, when the build cannot offload.

    CUDA for NVIDIA (with the GB10's architecture named on a DGX Spark), Metal for Apple
    silicon; ``version`` pins the installed llama-cpp-python, so the rebuild changes only the
    backend. None when there is no GPU or the build already offloads.
    """
    if build_offloads is not False or not gpus:
        return None
    if gpus[0].vendor == "apple":
        flags = "-DGGML_METAL=on"
    elif any(gpu.is_gb10 for gpu in gpus):
        flags = f"-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES={GB10_CUDA_ARCH}"
    else:
        flags = "-DGGML_CUDA=on"
    package = f"llama-cpp-python=={version}" if version else "llama-cpp-python"
    return f'CMAKE_ARGS="{flags}" pip install --force-reinstall --no-cache-dir {package}'


def check_offload(gpus: Sequence[GPUInfo], llama: Any = None) -> OffloadStatus:
    """Whether the installed llama-cpp-python can offload, and the fix when ``gpus`` need one.

    ``llama`` is the ``llama_cpp`` module (imported when None).
    """
    llama = llama or _import_llama()
    offloads = build_supports_offload(llama) if llama is not None else None
    return OffloadStatus(offloads, offload_fix(gpus, offloads, getattr(llama, "__version__", None)))

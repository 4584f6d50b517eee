"""GPU detection and the offload check, driven by fake NVML and llama modules (no GPU needed)."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from deskai.hardware import gpu
from deskai.hardware.gpu import GPUInfo, check_offload, detect_gpus, nvidia_gpus, offload_fix

GIB = 2**30
SYSTEM = (128 * 10**9, 100 * 10**9)  # (total, available) bytes of system memory


class NVMLError(Exception):
    pass


class FakeNVML:
    """The pynvml calls deskai makes, answered from a list of boards.

    A board without ``memory`` raises NVMLError on the memory query, as NVML does for the GB10
    (NOT_SUPPORTED).
    """

    NVMLError = NVMLError

    def __init__(self, boards: list[dict[str, Any]], *, driver: str = "580.95.05",
                 cuda: int = 13000, init_error: bool = False) -> None:
        self.boards, self.driver, self.cuda, self.init_error = boards, driver, cuda, init_error
        self.shut_down = False

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.boards)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        return self.boards[index]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> bytes:
        return handle["name"].encode()  # older nvidia-ml-py versions return bytes

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        if "memory" not in handle:
            raise NVMLError("Not Supported")
        total, used = handle["memory"]
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetCudaComputeCapability(self, handle: dict[str, Any]) -> tuple[int, int]:
        return handle["cc"]

    def nvmlDeviceGetPowerManagementLimit(self, handle: dict[str, Any]) -> int:
        if "power_mw" not in handle:
            raise NVMLError("Not Supported")
        return handle["power_mw"]

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda


RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "memory": (24 * GIB, 2 * GIB), "cc": (8, 9),
            "power_mw": 450_000}
GB10 = {"name": "NVIDIA GB10", "cc": (12, 1)}


def fake_llama(offloads: bool, version: str = "0.3.36") -> SimpleNamespace:
    return SimpleNamespace(llama_supports_gpu_offload=lambda: offloads, __version__=version)


def test_no_gpu() -> None:
    nvml = FakeNVML([], driver="580.95.05")
    found = nvidia_gpus(nvml, SYSTEM)
    assert found.devices == ()
    assert nvml.shut_down
    assert check_offload(found.devices, fake_llama(False)).fix is None


def test_a_24_gb_rtx() -> None:
    found = nvidia_gpus(FakeNVML([RTX_4090]), SYSTEM)
    (card,) = found.devices
    assert card == GPUInfo(0, "NVIDIA GeForce RTX 4090", 24 * GIB, 2 * GIB, 450.0, 22 * GIB,
                           "8.9", unified=False, vendor="nvidia")
    assert (found.driver_version, found.cuda_driver_version) == ("580.95.05", "13.0")
    assert card.to_dict()["memory_free_bytes"] == 22 * GIB
    status = check_offload(found.devices, fake_llama(True))
    assert (status.build_offloads, status.fix) == (True, None)


def test_gb10_without_nvml_memory_is_unified_system_memory() -> None:
    found = nvidia_gpus(FakeNVML([GB10], cuda=13010), SYSTEM)
    (spark,) = found.devices
    assert spark.unified and spark.is_gb10
    assert (spark.memory_bytes, spark.memory_free_bytes) == SYSTEM
    assert spark.memory_used_bytes == SYSTEM[0] - SYSTEM[1]
    assert spark.compute_capability == "12.1"
    assert spark.power_limit_w is None  # not reported: None, not a crash
    assert found.cuda_driver_version == "13.1"


def test_gb10_is_unified_even_when_nvml_answers_the_memory_query() -> None:
    (spark,) = nvidia_gpus(FakeNVML([{**GB10, "memory": (4 * GIB, GIB)}]), SYSTEM).devices
    assert spark.unified and spark.memory_bytes == SYSTEM[0]


def test_a_gpu_with_a_cpu_only_build_gets_the_cuda_command() -> None:
    found = nvidia_gpus(FakeNVML([RTX_4090]), SYSTEM)
    status = check_offload(found.devices, fake_llama(False))
    assert status.build_offloads is False
    assert status.fix == ('CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall '
                          "--no-cache-dir llama-cpp-python==0.3.36")
    assert status.to_dict() == {"build_offloads": False, "fix": status.fix}


def test_a_gb10_with_a_cpu_only_build_gets_its_architecture() -> None:
    found = nvidia_gpus(FakeNVML([GB10]), SYSTEM)
    assert check_offload(found.devices, fake_llama(False)).fix == (
        'CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=121" pip install '
        "--force-reinstall --no-cache-dir llama-cpp-python==0.3.36")


def test_apple_silicon_is_unified_and_gets_the_metal_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(gpu.platform, "machine", lambda: "arm64")
    monkeypatch.setattr(gpu, "_sysctl", lambda key: "Apple M4 Max")
    found = detect_gpus(FakeNVML([], init_error=True), SYSTEM)
    (chip,) = found.devices
    assert (chip.name, chip.vendor, chip.unified, chip.memory_bytes) == (
        "Apple M4 Max", "apple", True, SYSTEM[0])
    assert found.driver_version is None
    assert offload_fix(found.devices, False) == (
        'CMAKE_ARGS="-DGGML_METAL=on" pip install --force-reinstall --no-cache-dir '
        "llama-cpp-python")


def test_nvml_missing_entirely_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    monkeypatch.setattr(gpu.platform, "system", lambda: "Linux")
    assert nvidia_gpus().devices == ()
    assert detect_gpus(memory=SYSTEM).devices == ()


def test_nvml_without_a_driver_is_no_gpu() -> None:
    nvml = FakeNVML([RTX_4090], init_error=True)
    assert nvidia_gpus(nvml, SYSTEM).devices == ()


def test_llama_cpp_python_missing_is_unknown_not_a_crash(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    found = nvidia_gpus(FakeNVML([RTX_4090]), SYSTEM)
    assert check_offload(found.devices) == gpu.OffloadStatus(None, None)


def test_this_machine_reads_without_crashing() -> None:
    """The real NVML and llama-cpp-python, whatever this machine has."""
    found = detect_gpus()
    status = check_offload(found.devices)
    assert status.build_offloads in (True, False, None)
    assert status.fix is None or "llama-cpp-python" in status.fix

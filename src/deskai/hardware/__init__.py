"""Hardware: the catalog of accelerators, systems and clusters, and this machine's detection."""

from __future__ import annotations

from deskai.hardware.catalog import (
    Accelerator,
    Catalog,
    System,
    load_catalog,
    parse_catalog,
    raw_catalog,
)
from deskai.hardware.gpu import (
    GPUInfo,
    GPUs,
    OffloadStatus,
    build_supports_offload,
    check_offload,
    detect_gpus,
    offload_fix,
)
from deskai.hardware.local import (
    LocalMachine,
    detect,
    measure_memory_bandwidth,
    target_system,
)

__all__ = [
    "Accelerator",
    "Catalog",
    "GPUInfo",
    "GPUs",
    "LocalMachine",
    "OffloadStatus",
    "System",
    "build_supports_offload",
    "check_offload",
    "detect",
    "target_system",
    "detect_gpus",
    "load_catalog",
    "measure_memory_bandwidth",
    "offload_fix",
    "parse_catalog",
    "raw_catalog",
]

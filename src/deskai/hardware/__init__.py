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
from deskai.hardware.local import GPUInfo, LocalMachine, detect, measure_memory_bandwidth

__all__ = [
    "Accelerator",
    "Catalog",
    "GPUInfo",
    "LocalMachine",
    "System",
    "detect",
    "load_catalog",
    "measure_memory_bandwidth",
    "parse_catalog",
    "raw_catalog",
]

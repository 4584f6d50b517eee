"""The hardware catalog: accelerators, systems and clusters, read from ``catalog.toml``.

Every figure in the data file has its source beside it; this module only turns the file into
frozen dataclasses and answers lookups. Unknown names raise ``UnknownHardwareError`` with the
closest known names, so a typo at the command line gets a useful one-line answer.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from deskai.errors import UnknownHardwareError

GB = 1e9
TFLOPS = 1e12

#: Precisions the catalog may list, fastest last; a missing one falls back to the next slower.
DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp8", "fp4")


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One device: a GPU, a unified-memory SoC, or a CPU socket with its DRAM."""

    key: str
    name: str
    kind: str  # "gpu", "unified" (memory shared with the OS), or "cpu"
    memory_bytes: float
    memory_bandwidth: float  # bytes/s
    tflops: dict[str, float]  # dense peak per dtype
    intra_node_bandwidth: float  # bytes/s per direction, per device
    inter_node_bandwidth: float  # bytes/s per direction, per device
    power_w: float
    os_reserved_bytes: float = 0.0
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def usable_memory_bytes(self) -> float:
        """Memory a model may use: unified-memory machines leave room for the OS."""
        return self.memory_bytes - self.os_reserved_bytes

    def flops(self, dtype: str) -> float:
        """Dense peak FLOP/s at ``dtype``; a precision the device lacks runs at the next slower."""
        order = DTYPES.index(dtype) if dtype in DTYPES else DTYPES.index("bf16")
        for candidate in reversed(DTYPES[: order + 1]):
            if candidate in self.tflops:
                return self.tflops[candidate] * TFLOPS
        return min(self.tflops.values()) * TFLOPS

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "name": self.name, "kind": self.kind,
            "memory_bytes": self.memory_bytes,
            "memory_bandwidth_bytes_per_s": self.memory_bandwidth,
            "tflops": dict(self.tflops), "intra_node_bytes_per_s": self.intra_node_bandwidth,
            "inter_node_bytes_per_s": self.inter_node_bandwidth, "power_w": self.power_w,
            "os_reserved_bytes": self.os_reserved_bytes, "sources": dict(self.sources),
        }


@dataclass(frozen=True, slots=True)
class System:
    """A machine or a cluster: ``count`` devices of one type, ``gpus_per_node`` to a node.

    A cluster of mixed types (Colossus expanded) lists the others in ``extra``; plans use the
    primary type for every device, which is conservative when the extra type is the bigger one.
    """

    key: str
    name: str
    accelerator: Accelerator
    count: int
    gpus_per_node: int
    power_kw: float | None = None
    extra: tuple[tuple[Accelerator, int], ...] = ()
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def total_devices(self) -> int:
        return self.count + sum(n for _, n in self.extra)

    @property
    def power_w(self) -> float:
        """Whole-system power: the published figure, else the devices' TDP summed."""
        if self.power_kw is not None:
            return self.power_kw * 1000
        return self.count * self.accelerator.power_w + sum(a.power_w * n for a, n in self.extra)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "name": self.name, "accelerator": self.accelerator.key,
            "count": self.count, "gpus_per_node": self.gpus_per_node,
            "extra": [{"accelerator": a.key, "count": n} for a, n in self.extra],
            "power_w": self.power_w, "sources": dict(self.sources),
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    accelerators: dict[str, Accelerator]
    systems: dict[str, System]

    def names(self) -> list[str]:
        keys = list(self.accelerators) + list(self.systems)
        aliases = [a for item in (*self.accelerators.values(), *self.systems.values())
                   for a in item.aliases]
        return keys + aliases

    def find(self, name: str) -> Accelerator | System:
        """The accelerator or system called ``name`` (key or alias, any case)."""
        wanted = _normalize(name)
        for table in (self.systems, self.accelerators):
            for item in table.values():
                if wanted == item.key or wanted in item.aliases:
                    return item
        raise UnknownHardwareError(_unknown_message(name, self.names()))

    def accelerator(self, name: str) -> Accelerator:
        """An accelerator by name; a system's name gives the system's accelerator."""
        found = self.find(name)
        return found.accelerator if isinstance(found, System) else found

    def system(self, name: str) -> System:
        """A system by name; an accelerator's name gives a one-device system."""
        found = self.find(name)
        if isinstance(found, System):
            return found
        return System(key=found.key, name=found.name, accelerator=found, count=1,
                      gpus_per_node=1)


def _normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _unknown_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(_normalize(name), known, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown hardware {name!r}{hint} (see `deskai hw --catalog`)"


def _accelerator(key: str, raw: dict[str, Any]) -> Accelerator:
    return Accelerator(
        key=key,
        name=raw["name"],
        kind=raw["kind"],
        memory_bytes=raw["memory_gb"] * GB,
        memory_bandwidth=raw["memory_bandwidth_gbs"] * GB,
        tflops={k: float(v) for k, v in raw["tflops"].items()},
        intra_node_bandwidth=raw.get("intra_node_gbs", 0) * GB,
        inter_node_bandwidth=raw.get("inter_node_gbs", 0) * GB,
        power_w=raw["power_w"],
        os_reserved_bytes=raw.get("os_reserved_gb", 0) * GB,
        aliases=tuple(raw.get("aliases", ())),
        sources=dict(raw.get("sources", {})),
    )


def _system(key: str, raw: dict[str, Any], accelerators: dict[str, Accelerator]) -> System:
    extra = raw.get("extra")
    extras = ((accelerators[extra["accelerator"]], int(extra["count"])),) if extra else ()
    return System(
        key=key,
        name=raw["name"],
        accelerator=accelerators[raw["accelerator"]],
        count=int(raw["count"]),
        gpus_per_node=int(raw.get("gpus_per_node", 1)),
        power_kw=raw.get("power_kw"),
        extra=extras,
        aliases=tuple(raw.get("aliases", ())),
        sources=dict(raw.get("sources", {})),
    )


def parse_catalog(raw: dict[str, Any]) -> Catalog:
    accelerators = {k: _accelerator(k, v) for k, v in raw.get("accelerators", {}).items()}
    systems = {k: _system(k, v, accelerators) for k, v in raw.get("systems", {}).items()}
    return Catalog(accelerators, systems)


def raw_catalog() -> dict[str, Any]:
    """The data file as parsed TOML (tests check every figure has a source)."""
    text = resources.files("deskai.hardware").joinpath("catalog.toml").read_text("utf-8")
    return tomllib.loads(text)


@cache
def load_catalog() -> Catalog:
    """The built-in catalog, parsed once per process."""
    return parse_catalog(raw_catalog())

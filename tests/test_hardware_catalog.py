"""The hardware catalog: every figure sourced, lookups, suggestions; local detection."""

from __future__ import annotations

import pytest

from deskai.errors import NotFoundError, UnknownHardwareError
from deskai.hardware import detect, load_catalog, measure_memory_bandwidth, raw_catalog

FIGURES = ("memory_gb", "memory_bandwidth_gbs", "os_reserved_gb", "intra_node_gbs",
           "inter_node_gbs", "power_w")


def test_every_nonzero_figure_has_a_source() -> None:
    raw = raw_catalog()
    for key, entry in raw["accelerators"].items():
        sources = entry["sources"]
        for figure in FIGURES:
            if entry.get(figure):
                assert sources.get(figure), f"{key}.{figure} has no source"
        for dtype in entry["tflops"]:
            assert sources.get(f"tflops_{dtype}"), f"{key}.tflops.{dtype} has no source"
    for key, entry in raw["systems"].items():
        for figure in ("count", "power_kw", "extra"):
            if figure in entry:
                assert entry["sources"].get(figure), f"{key}.{figure} has no source"


def test_issue_hardware_is_in_the_catalog() -> None:
    cat = load_catalog()
    for name in ("dgx-spark", "h100", "h100-pcie", "h200", "b200", "gb200", "a100-40gb",
                 "a100-80gb", "l40s", "rtx-4090", "rtx-5090", "m4-max", "m3-ultra", "cpu",
                 "dgx-h100", "dgx-spark-pair", "colossus", "colossus-200k", "meta-24k"):
        assert cat.find(name) is not None


def test_product_facts() -> None:
    cat = load_catalog()
    spark = cat.accelerator("dgx-spark")
    assert spark.memory_bytes == 128e9 and spark.memory_bandwidth == 273e9
    h100 = cat.accelerator("h100")
    assert h100.tflops["bf16"] == 989 and h100.memory_bandwidth == 3.35e12
    assert cat.system("colossus").count == 100_000
    expanded = cat.system("colossus-200k")
    assert expanded.total_devices == 200_000 and expanded.extra[0][0].key == "h200"
    assert cat.system("dgx-h100").power_w == 10_200


def test_missing_precision_falls_back_to_slower() -> None:
    a100 = load_catalog().accelerator("a100")
    assert a100.flops("fp8") == a100.flops("bf16") == 312e12


def test_unknown_hardware_suggests_close_names() -> None:
    with pytest.raises(UnknownHardwareError) as info:
        load_catalog().find("h10O")
    assert "h100" in str(info.value)
    assert isinstance(info.value, NotFoundError) and isinstance(info.value, KeyError)


def test_local_detection() -> None:
    machine = detect(measure_bandwidth=False)
    assert machine.physical_cores >= 1 and machine.memory_bytes > 2**30
    assert machine.cpu_model
    device = machine.as_accelerator(threads=1)
    assert device.kind == "cpu" and device.tflops["fp32"] > 0
    assert isinstance(machine.to_dict()["gpus"], list)


def test_bandwidth_measurement_is_plausible() -> None:
    bandwidth = measure_memory_bandwidth(16 * 2**20, repeats=2)
    assert 1e8 < bandwidth < 5e12

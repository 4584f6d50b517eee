"""The machines people ask about are in the catalog, sourced, and plannable; the roofline's
decode efficiency against llama.cpp's published runs on them (docs/planner.md)."""

from __future__ import annotations

import pytest

from deskai.hardware import load_catalog, raw_catalog
from deskai.hardware.catalog import DTYPES, _normalize
from deskai.planner import catalog_model, fit
from deskai.planner.architectures import Architecture
from deskai.planner.readers import architecture_from_hf_config

CATALOG = load_catalog()
ASKED = ("m1-pro", "m1-max", "m1-ultra", "m2-pro", "m2-max", "m2-ultra", "m3-pro", "m3-max",
         "m3-ultra", "m4-pro", "m4-max", "rtx-3090", "rtx-4060-ti-16gb", "rtx-4090", "rtx-5080",
         "rtx-5090", "rtx-pro-6000", "ryzen-ai-max-395", "jetson-agx-thor", "b200", "gb200",
         "dgx-b200", "gb200-nvl72", "gb200-nvl4")
FIGURES = ("memory_gb", "memory_bandwidth_gbs", "os_reserved_gb", "intra_node_gbs",
           "inter_node_gbs", "power_w")


@pytest.mark.parametrize("key", list(raw_catalog()["accelerators"]))
def test_every_accelerator_loads_with_a_source_per_figure(key: str) -> None:
    raw = raw_catalog()["accelerators"][key]
    device = CATALOG.accelerators[key]
    assert device.kind in ("gpu", "unified", "cpu") and device.name
    assert device.memory_bytes > 0 and device.memory_bandwidth > 0 and device.power_w > 0
    assert 0 <= device.os_reserved_bytes < device.memory_bytes
    assert set(device.tflops) <= set(DTYPES) and all(v > 0 for v in device.tflops.values())
    sources = raw["sources"]
    for figure in FIGURES:
        if raw.get(figure):
            assert str(sources.get(figure, "")).strip(), f"{key}.{figure} has no source"
    for dtype in raw["tflops"]:
        assert str(sources.get(f"tflops_{dtype}", "")).strip(), f"{key}.tflops.{dtype}"


@pytest.mark.parametrize("key", list(raw_catalog()["systems"]))
def test_every_system_loads_with_sources(key: str) -> None:
    raw = raw_catalog()["systems"][key]
    system = CATALOG.systems[key]
    assert system.count >= 1 and 1 <= system.gpus_per_node <= max(system.count, 1)
    for figure in ("count", "power_kw", "extra"):
        if figure in raw:
            assert str(raw["sources"].get(figure, "")).strip(), f"{key}.{figure} has no source"


def test_no_two_entries_share_a_name() -> None:
    names = CATALOG.names()
    assert len(names) == len(set(names))
    assert all(name == _normalize(name) for name in names)  # findable as typed


@pytest.mark.parametrize("name", ASKED)
def test_asked_for_machines_are_present(name: str) -> None:
    assert CATALOG.find(name) is not None


def test_aliases_people_type() -> None:
    for alias, key in (("strix-halo", "ryzen-ai-max-395"), ("Jetson Thor", "jetson-agx-thor"),
                       ("3090", "rtx-3090"), ("4060-ti", "rtx-4060-ti-16gb"),
                       ("RTX_PRO_6000_Blackwell", "rtx-pro-6000"), ("hgx-b200", "dgx-b200")):
        assert CATALOG.find(alias).key == key


def test_sparse_figures_are_halved() -> None:
    assert CATALOG.accelerator("rtx-5080").tflops["fp4"] == 1801 / 2  # 1,801 AI TOPS sparse
    assert CATALOG.accelerator("rtx-pro-6000").tflops["fp4"] == 4000 / 2
    assert CATALOG.accelerator("jetson-thor").tflops["fp4"] == 2070 / 2
    assert CATALOG.system("dgx-b200").power_w == 14_300
    assert CATALOG.system("dgx-b200").total_devices * 180 == 1440  # NVIDIA: 1,440 GB in all


@pytest.mark.parametrize(("model", "machine", "quant", "fits"), [
    ("llama3-8b", "rtx-3090", "q4_k_m", True),
    ("llama3-8b", "rtx-4060-ti-16gb", "q8_0", True),
    ("llama3-70b", "rtx-5080", "q4_k_m", False),
    ("llama3-70b", "strix-halo", "q4_k_m", True),  # ~42 GB in the GPU's 96
    ("llama3-70b", "rtx-pro-6000", "q8_0", True),
    ("gpt-oss-120b", "m2-ultra", None, True),
    ("gpt-oss-120b", "m1-pro", None, False),
    ("gpt-oss-120b", "jetson-thor", None, True),
    ("qwen3-235b-a22b", "dgx-b200", "fp8", True),
    ("deepseek-v3", "gb200-nvl4", "q4_k_m", True),
])
def test_fit_against_new_machines(model: str, machine: str, quant: str | None,
                                  fits: bool) -> None:
    result = fit(catalog_model(model), CATALOG.system(machine), quant=quant, context=4096)
    assert result.fits is fits
    assert result.speed.decode_tokens_per_s > 0 and result.speed.prefill_tokens_per_s > 0


# google/gemma-3-4b-it's text_config (the rest from Gemma3TextConfig's defaults)
GEMMA3_4B = architecture_from_hf_config(
    {"model_type": "gemma3", "text_config": {
        "model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240,
        "num_hidden_layers": 34, "sliding_window": 1024}}, name="gemma-3-4b-it")

# llama.cpp's published single-stream decode (tok/s): benches/dgx-spark/dgx-spark.md (tg32,
# build 11fb327bf) as shipped in llama-cpp-python 0.3.36's sdist, and PR #15802 (RTX 3090,
# llama 8B Q4_0, micro-batch 1, pp512). The low-bit efficiency is calibrated on the 4-bit
# rows; the Q8_0 rows keep the stated 0.75.
LLAMA_CPP_RUNS: list[tuple[str, str | Architecture, str, float]] = [
    ("dgx-spark", "gpt-oss-20b", "mxfp4", 83.43),
    ("dgx-spark", "gpt-oss-120b", "mxfp4", 58.72),
    ("dgx-spark", "qwen3-30b-a3b", "q8_0", 61.06),
    ("dgx-spark", "qwen2.5-7b", "q8_0", 29.43),
    ("dgx-spark", GEMMA3_4B, "q4_0", 81.05),
    ("rtx-3090", "llama3-8b", "q4_0", 156.56),
]


@pytest.mark.parametrize(("machine", "model", "quant", "published"), LLAMA_CPP_RUNS)
def test_decode_within_ten_percent_of_llama_cpp(machine: str, model: str | Architecture,
                                                quant: str, published: float) -> None:
    arch = catalog_model(model) if isinstance(model, str) else model
    result = fit(arch, CATALOG.system(machine), quant=quant, context=4096)
    assert result.speed.decode_tokens_per_s == pytest.approx(published, rel=0.10)

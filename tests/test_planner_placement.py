"""Where layers go (``--gpu-layers``): the planner's placement on simulated devices, and the
runtime applying it — on this CPU-only machine, as 0 layers with the reason said."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskai.engine import EngineOptions, ModelSpec
from deskai.errors import InvalidInputError
from deskai.planner.architectures import catalog_models
from deskai.planner.memory import Runtime
from deskai.planner.placement import Device, parse_gpu_layers, place
from deskai.planner.quant import get_quant
from deskai.runtime.fit import check_fits, placement_for

GiB = 2**30
LLAMA_70B = catalog_models()["llama3-70b"]
Q4 = get_quant("q4_k_m")
RUNTIME = Runtime(context=8192)


def placed(device: Device | None, requested: object = "auto"):  # type: ignore[no-untyped-def]
    return place(LLAMA_70B, RUNTIME, device, requested=requested, quant=Q4)  # type: ignore[arg-type]


def test_a_70b_splits_across_a_24_and_a_16_gb_card_and_fits_a_spark() -> None:
    rtx_24, rtx_16 = placed(Device("RTX 4090", 24 * GiB)), placed(Device("16 GB", 16 * GiB))
    spark = placed(Device("GB10", 120 * GiB, unified=True))
    assert 0 < rtx_16.gpu_layers < rtx_24.gpu_layers < LLAMA_70B.layers
    for split, size in ((rtx_24, 24), (rtx_16, 16)):
        margin = max(512 * 2**20, 0.05 * size * GiB)
        assert split.device_bytes <= size * GiB - margin
        assert split.kv_on_device and split.flash_attn and split.host_bytes > 0
    assert spark.gpu_layers == LLAMA_70B.layers + 1 and "unified" in spark.note


def test_one_more_layer_would_not_have_fit() -> None:
    device = Device("RTX 4090", 24 * GiB)
    chosen = placed(device)
    more = placed(device, chosen.gpu_layers + 1)
    assert more.device_bytes > device.usable_bytes >= chosen.device_bytes


def test_all_and_a_number_are_honoured_and_cpu_only_says_why() -> None:
    device = Device("RTX 4090", 24 * GiB)
    assert placed(device, "all").gpu_layers == LLAMA_70B.layers + 1
    assert placed(device, 10).gpu_layers == 10
    assert placed(None).gpu_layers == 0 and placed(None).device_bytes == 0
    cpu_build = place(LLAMA_70B, RUNTIME, device, quant=Q4, offload_supported=False)
    assert cpu_build.gpu_layers == 0 and "cannot offload" in cpu_build.note
    assert "all 80 layers on the CPU" in cpu_build.describe()


def test_device_bytes_grow_with_every_layer() -> None:
    device = Device("big", 1000 * GiB)
    sizes = [placed(device, n).device_bytes for n in range(1, LLAMA_70B.layers + 2)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


@pytest.mark.parametrize("value", ["auto", "all", "0", "33"])
def test_gpu_layers_values(value: str) -> None:
    assert parse_gpu_layers(value) == (value if not value.isdigit() else int(value))


def test_a_bad_gpu_layers_value_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="--gpu-layers"):
        parse_gpu_layers("lots")


def test_on_this_machine_the_runtime_places_nothing_on_a_gpu(real_gguf: Path) -> None:
    spec = ModelSpec("gemma3:270m", real_gguf, "text", "gemma3")
    options = EngineOptions(context_length=2048, parallel=4)
    placement = placement_for(spec, options, "all")
    assert placement.gpu_layers == 0
    applied = check_fits(spec, options, "all")
    assert applied.gpu_layers == 0 and not applied.flash_attn
    simulated = placement_for(spec, options, device=Device("RTX 4090", 24 * GiB))
    assert simulated.gpu_layers == 0 and "cannot offload" in simulated.note


def test_hw_says_whether_this_build_can_offload() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "deskai", "hw", "--no-measure", "--json"],
                          capture_output=True, text=True, timeout=60, check=True)
    offload = json.loads(done.stdout)["offload"]
    assert offload["build_offloads"] is False  # llama-cpp-python built for the CPU here
    assert offload["fix"] is None  # and no GPU that a rebuild would reach


def test_the_split_adds_up_to_what_llama_cpp_logs(real_gguf: Path) -> None:
    """Gemma 3 270M, 4 slots of 2,048 tokens in one KV buffer: llama-server -c 8192 -np 4
    --kv-unified -v logs "CPU_Mapped model buffer size = 235.16 MiB", "CPU KV buffer size =
    24.00 MiB" + "37.50 MiB" (full and windowed layers) and "CPU compute buffer size = 28.27
    MiB". With every layer offloaded, the placement's device share is those weights (less the
    embeddings, which stay on the host, plus the output layer's copy), that KV cache, and a
    compute buffer of the same order, plus the CUDA context."""
    from deskai.planner.memory import CUDA_CONTEXT_BYTES
    from deskai.planner.placement import _LayerBytes
    from deskai.planner.readers import read_gguf

    model = read_gguf(real_gguf)
    runtime = Runtime(context=2048, batch=4, kv_unified=True, flash_attn=True)
    parts = _LayerBytes.of(model.architecture, runtime, model, None)
    mib = 2**20
    kv = 61.5 * mib
    weights = sum(parts.per_layer) - kv + model.embedding_bytes  # repeating + embeddings
    assert weights == pytest.approx(235.16 * mib, abs=0.01 * mib)
    assert parts.output == model.embedding_bytes  # tied: the device gets its own copy
    compute = parts.compute - CUDA_CONTEXT_BYTES
    assert 0.3 * 28.27 * mib < compute < 3 * 28.27 * mib
    everything = place(model.architecture, runtime, Device("simulated", 80 * GiB),
                       requested="all", model_file=model)
    assert everything.device_bytes == pytest.approx(
        sum(parts.per_layer) + parts.output + parts.compute)

"""Training plans: FLOPs, layouts that fit, MFU, time and energy."""

from __future__ import annotations

import pytest

from deskai.errors import InvalidInputError
from deskai.hardware import load_catalog
from deskai.planner import catalog_model
from deskai.planner.training import Layout, memory_per_gpu, plan_train, training_flops

CAT = load_catalog()


def test_flops_are_six_nd_plus_attention() -> None:
    llama = catalog_model("llama3-405b")
    flops = training_flops(llama, 15.6e12, 8192)
    # Llama 3 paper: 3.8e25 FLOPs; attention adds a few percent at 8K
    assert flops == pytest.approx(3.8e25, rel=0.06)
    moe = catalog_model("deepseek-v3")
    assert training_flops(moe, 1e12, 4096) < 6 * 100e9 * 1e12  # active (37B), not 671B


def test_llama3_405b_on_meta_cluster() -> None:
    plan = plan_train(catalog_model("llama3-405b"), CAT.system("meta-24k"), tokens=15.6e12,
                      gpus=16384)
    assert plan.layout.gpus <= 16384 and plan.layout.tp <= 8
    assert plan.memory_per_gpu_bytes <= 80e9
    assert 0.2 < plan.mfu < 0.7
    assert plan.gpu_hours == pytest.approx(plan.days * 24 * plan.layout.gpus, rel=0.01)
    assert plan.energy_mwh > 0


def test_every_layout_kept_fits() -> None:
    llama = catalog_model("llama3-70b")
    small = memory_per_gpu(llama, Layout(8, 4, 2, 1, 1, False), 8192, 16)
    sharded = memory_per_gpu(llama, Layout(8, 4, 2, 1, 3, False), 8192, 16)
    recompute = memory_per_gpu(llama, Layout(8, 4, 2, 1, 1, True), 8192, 16)
    assert sharded < small and recompute < small


def test_colossus_search() -> None:
    plan = plan_train(catalog_model("llama3-405b"), CAT.system("colossus"), tokens=15.6e12,
                      global_batch_tokens=64 * 2**20)
    assert plan.gpus == 100_000 and plan.layout.gpus <= 100_000
    assert plan.days < 60


def test_model_too_big_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        plan_train(catalog_model("llama3-405b"), CAT.system("h100"), tokens=1e12, gpus=1)
    with pytest.raises(InvalidInputError):
        plan_train(catalog_model("llama3-8b"), CAT.system("h100"), tokens=-1, gpus=8)

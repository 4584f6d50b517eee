"""Memory fit and roofline: KV layer by layer, compute buffers, fit decisions, the 200B claim."""

from __future__ import annotations

import pytest

from deskai.errors import InvalidInputError
from deskai.hardware import load_catalog
from deskai.planner import catalog_model, fit, get_quant, quants_that_fit, rank_catalog
from deskai.planner.memory import MiB, Runtime, compute_buffer_bytes, kv_cache_bytes
from deskai.planner.quant import experts_touched

SPARK = load_catalog().system("dgx-spark")


def test_gqa_kv_cache() -> None:
    # 32 layers x (K+V) x 8 KV heads x 128 x 8192 tokens x 2 bytes = 1 GiB
    llama = catalog_model("llama3-8b")
    assert kv_cache_bytes(llama, Runtime(context=8192)) == 2**30
    assert kv_cache_bytes(llama, Runtime(context=8192, batch=4)) == 4 * 2**30
    assert kv_cache_bytes(llama, Runtime(context=8192, kv_type="q8_0")) == 2**30 * 34 / 64


def test_sliding_window_kv_matches_llama_cpp() -> None:
    gemma = catalog_model("gemma3-270m")
    # llama.cpp's own log for this model at n_ctx 4096: 72 MiB with a full-size SWA cache;
    # 3 global layers x 4096 + 15 sliding layers x pad256(512 + 512) cells otherwise
    assert kv_cache_bytes(gemma, Runtime(context=4096, swa_full=True)) == 72 * MiB
    assert kv_cache_bytes(gemma, Runtime(context=4096)) == 27 * MiB


def test_mla_kv_cache() -> None:
    ds = catalog_model("deepseek-v3")
    assert kv_cache_bytes(ds, Runtime(context=4096)) == 61 * 576 * 4096 * 2


def test_compute_buffer_worst_case_is_the_logits() -> None:
    gemma = catalog_model("gemma3-270m")
    buffer = compute_buffer_bytes(gemma, Runtime(context=4096))
    assert buffer == pytest.approx(514.5 * MiB, rel=0.01)  # llama.cpp: 514.50 MiB


def test_fit_decisions_and_max_context() -> None:
    small = fit(catalog_model("llama3-8b"), SPARK, context=8192)
    assert small.fits and small.quant == "bf16"
    assert small.max_context == 131072
    big = fit(catalog_model("llama3-405b"), SPARK, quant="q4_k_m")
    assert not big.fits and big.max_context == 0
    # NVIDIA's claim for two linked Sparks: up to 405B at FP4; Q4_K_M's 4.84 bits are too many
    pair = load_catalog().system("dgx-spark-pair")
    assert fit(catalog_model("llama3-405b"), pair, quant="nvfp4", context=8192).fits
    assert not fit(catalog_model("llama3-405b"), pair, quant="q4_k_m", context=8192).fits


def test_max_context_is_where_memory_runs_out() -> None:
    result = fit(catalog_model("llama3-70b"), load_catalog().system("h100"), quant="q4_k_m")
    assert 0 < result.max_context < 131072
    at_max = fit(catalog_model("llama3-70b"), load_catalog().system("h100"), quant="q4_k_m",
                 context=result.max_context)
    beyond = fit(catalog_model("llama3-70b"), load_catalog().system("h100"), quant="q4_k_m",
                 context=result.max_context + 256)
    assert at_max.fits and not beyond.fits


def test_moe_decode_reads_only_active_experts() -> None:
    moe = fit(catalog_model("gpt-oss-120b"), SPARK)
    dense = fit(catalog_model("llama3-70b"), SPARK, quant="mxfp4")
    assert moe.quant == "mxfp4"
    assert moe.speed.decode_tokens_per_s > 5 * dense.speed.decode_tokens_per_s
    arch = catalog_model("gpt-oss-120b")
    assert experts_touched(arch, 1) == pytest.approx(4)
    assert 4 < experts_touched(arch, 8) < 32


def test_seed_claim_200b_in_128gb() -> None:
    qwen = catalog_model("qwen3-235b-a22b")
    assert quants_that_fit(qwen, SPARK) == ["q3_k_m", "q2_k"]  # 3-bit, not 4-bit
    assert "q4_k_m" in quants_that_fit(catalog_model("mistral-large-123b"), SPARK)


def test_rank_catalog_lists_fitting_models_first() -> None:
    ranked = rank_catalog(SPARK)
    fits = [r.fits for r in ranked]
    assert fits == sorted(fits, reverse=True) and any(fits) and not all(fits)


def test_bad_numbers_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        fit(catalog_model("llama3-8b"), SPARK, context=-1)
    with pytest.raises(InvalidInputError):
        fit(catalog_model("llama3-8b"), SPARK, batch=0)
    with pytest.raises(InvalidInputError):
        get_quant("q4_k_x")

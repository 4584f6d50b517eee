"""Architectures: parameter counts from shapes vs the publishers' totals; readers."""

from __future__ import annotations

import pytest

from deskai.errors import UnknownArchitectureError
from deskai.planner import catalog_model, catalog_models, load_model
from deskai.planner.readers import architecture_from_hf_config


@pytest.mark.parametrize("name", sorted(catalog_models()))
def test_parameter_count_matches_published(name: str) -> None:
    arch = catalog_models()[name]
    assert arch.params_published is not None
    assert arch.params == pytest.approx(arch.params_published, rel=0.02)
    if arch.active_params_published:
        assert arch.active_params == pytest.approx(arch.active_params_published, rel=0.1)


def test_issue_models_present() -> None:
    for name in ("llama3-8b", "llama3-70b", "llama3-405b", "qwen2.5-7b", "qwen3-8b",
                 "gemma3-27b", "mistral-7b", "deepseek-v3", "gpt-oss-20b", "gpt-oss-120b",
                 "grok-1"):
        catalog_model(name)


def test_sliding_window_layers() -> None:
    gemma = catalog_model("gemma3-270m")
    globals_ = [i for i in range(gemma.layers) if not gemma.is_sliding(i)]
    assert globals_ == [5, 11, 17]  # llama.cpp's log for this model shows the same three
    oss = catalog_model("gpt-oss-120b")
    assert sum(oss.is_sliding(i) for i in range(oss.layers)) == 18


def test_mla_caches_one_latent() -> None:
    ds = catalog_model("deepseek-v3")
    assert ds.is_mla and ds.kv_elements_per_token(0) == 512 + 64


def test_unknown_model_suggests() -> None:
    with pytest.raises(UnknownArchitectureError) as info:
        catalog_model("lama3-8b")
    assert "llama3-8b" in str(info.value)
    with pytest.raises(UnknownArchitectureError):
        load_model("no-such-model-anywhere")


def test_hf_config_gpt_oss_layer_types() -> None:
    config = {"model_type": "gpt_oss", "hidden_size": 2880, "num_attention_heads": 64,
              "num_key_value_heads": 8, "head_dim": 64, "num_hidden_layers": 24,
              "intermediate_size": 2880, "vocab_size": 201088,
              "max_position_embeddings": 131072, "num_local_experts": 32,
              "num_experts_per_tok": 4, "sliding_window": 128,
              "layer_types": ["sliding_attention", "full_attention"] * 12}
    arch = architecture_from_hf_config(config, name="gpt-oss-20b")
    reference = catalog_model("gpt-oss-20b")
    assert arch.swa_pattern == 2 and arch.sliding_window == 128
    assert arch.params == pytest.approx(reference.params, rel=0.01)


def test_gguf_header(real_gguf) -> None:
    model = load_model(str(real_gguf))
    arch = model.architecture
    assert (arch.layers, arch.hidden, arch.heads, arch.kv_heads, arch.head_dim) == (
        18, 640, 4, 1, 256)
    assert arch.sliding_window == 512 and arch.swa_pattern == 6 and arch.tied
    assert model.quantization == "q4_k_m"
    assert model.weight_bytes == pytest.approx(235.16 * 2**20, rel=1e-3)  # llama.cpp's log
    assert arch.params == pytest.approx(catalog_model("gemma3-270m").params, rel=0.01)

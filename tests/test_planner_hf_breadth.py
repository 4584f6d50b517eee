"""Hugging Face configs of every common naming: GPT-J, GPT-NeoX, Falcon, MPT, BLOOM, OPT,
Megatron/NeMo exports and multimodal ``text_config`` nesting. Each config below is the public
config.json's keys the planner reads (values as published); each count is checked against the
total its model card (or paper) publishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskai.cli import run_app
from deskai.errors import UnknownArchitectureError
from deskai.planner.readers import architecture_from_hf_config

# EleutherAI/gpt-j-6b config.json
GPTJ_6B = {"model_type": "gptj", "n_embd": 4096, "n_head": 16, "n_layer": 28, "n_inner": None,
           "n_positions": 2048, "rotary_dim": 64, "tie_word_embeddings": False,
           "vocab_size": 50400}
# EleutherAI/pythia-1b config.json (GPT-NeoX)
PYTHIA_1B = {"model_type": "gpt_neox", "hidden_size": 2048, "num_hidden_layers": 16,
             "num_attention_heads": 8, "intermediate_size": 8192,
             "max_position_embeddings": 2048, "rotary_pct": 0.25,
             "tie_word_embeddings": False, "vocab_size": 50304}
# tiiuae/falcon-7b config.json (transformers' names) ...
FALCON_7B = {"model_type": "falcon", "hidden_size": 4544, "num_attention_heads": 71,
             "num_hidden_layers": 32, "multi_query": True, "new_decoder_architecture": False,
             "parallel_attn": True, "bias": False, "vocab_size": 65024}
# ... and its first release's (RefinedWebModel: n_head, n_layer)
FALCON_7B_RW = {"model_type": "RefinedWebModel", "hidden_size": 4544, "n_head": 71,
                "n_layer": 32, "multi_query": True, "parallel_attn": True, "bias": False,
                "vocab_size": 65024}
# tiiuae/falcon-40b config.json: the new decoder architecture, 8 KV heads
FALCON_40B = {"model_type": "falcon", "hidden_size": 8192, "num_attention_heads": 128,
              "num_hidden_layers": 60, "num_kv_heads": 8, "new_decoder_architecture": True,
              "multi_query": True, "parallel_attn": True, "bias": False, "vocab_size": 65024}
# mosaicml/mpt-7b config.json
MPT_7B = {"model_type": "mpt", "d_model": 4096, "n_heads": 32, "n_layers": 32,
          "expansion_ratio": 4, "max_seq_len": 2048, "no_bias": True, "vocab_size": 50432,
          "attn_config": {"alibi": True, "attn_type": "multihead_attention", "prefix_lm": False}}
# bigscience/bloom-560m config.json, and bigscience/bloom's (n_embed, num_attention_heads)
BLOOM_560M = {"model_type": "bloom", "hidden_size": 1024, "n_head": 16, "n_layer": 24,
              "n_inner": None, "vocab_size": 250880}
BLOOM_176B = {"model_type": "bloom", "n_embed": 14336, "num_attention_heads": 112,
              "n_layer": 70, "vocab_size": 250880}
# facebook/opt-1.3b config.json
OPT_1_3B = {"model_type": "opt", "hidden_size": 2048, "num_hidden_layers": 24,
            "num_attention_heads": 32, "ffn_dim": 8192, "max_position_embeddings": 2048,
            "word_embed_proj_dim": 2048, "activation_function": "relu", "vocab_size": 50272}
# google/gemma-3-4b-it config.json: the text model's keys that differ from Gemma3TextConfig's
# defaults, and nothing else (no heads, KV heads, head_dim or vocabulary)
GEMMA3_4B = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
             "text_config": {"model_type": "gemma3_text", "hidden_size": 2560,
                             "intermediate_size": 10240, "num_hidden_layers": 34,
                             "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                             "sliding_window": 1024},
             "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152}}
# llava-hf/llava-1.5-7b-hf config.json: Vicuna 7B (Llama 2) under LlamaConfig's defaults
LLAVA_15_7B = {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
               "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "model_type": "llama",
                               "max_position_embeddings": 4096, "vocab_size": 32064},
               "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024}}
# Nemotron-4 340B as NeMo exports it (Megatron names, no model_type, squared-ReLU MLP); NeMo
# takes the vocabulary from the tokenizer, so the export says it as vocab_size
NEMOTRON4_340B = {"num_layers": 96, "hidden_size": 18432, "ffn_hidden_size": 73728,
                  "num_attention_heads": 96, "num_query_groups": 8, "kv_channels": 192,
                  "encoder_seq_length": 4096, "max_position_embeddings": 4096,
                  "activation": "squared-relu", "share_embeddings_and_output_weights": False,
                  "vocab_size": 256000}
# Llama 2 7B in Megatron-LM's argument names (SwiGLU, untied, padded vocabulary)
MEGATRON_LLAMA2_7B = {"num_layers": 32, "hidden_size": 4096, "ffn_hidden_size": 11008,
                      "num_attention_heads": 32, "group_query_attention": False,
                      "num_query_groups": 1, "seq_length": 4096, "swiglu": True,
                      "untie_embeddings_and_output_weights": True, "padded_vocab_size": 32000}

# (config, total parameters its publisher states, where, tolerance)
PUBLISHED = {
    "gpt-j-6b": (GPTJ_6B, 6_053_381_344, "model card: n_parameters 6053381344", 0.01),
    "pythia-1b": (PYTHIA_1B, 1_011_781_632, "Pythia model card: 1,011,781,632 total", 0.01),
    "falcon-7b": (FALCON_7B, 7e9, "model card: a 7B parameters causal decoder-only model",
                  0.02),
    "falcon-7b-rw": (FALCON_7B_RW, 7e9, "same model, first release's config", 0.02),
    "falcon-40b": (FALCON_40B, 40e9, "model card: a 40B parameters causal decoder-only model",
                   0.04),
    "mpt-7b": (MPT_7B, 6.7e9, "model card: n_parameters 6.7B", 0.02),
    "bloom-560m": (BLOOM_560M, 559_214_592, "model card: 559,214,592 parameters", 0.01),
    "bloom": (BLOOM_176B, 176_247_271_424, "model card: 176,247,271,424 parameters", 0.01),
    "opt-1.3b": (OPT_1_3B, 1.3e9, "OPT paper (arXiv 2205.01068) Table 1: 1.3B", 0.02),
    "gemma-3-4b-text": (GEMMA3_4B, 3_880_099_328,
                        "Keras Hub gemma3_4b_text preset: 3,880,099,328 (the LM, no vision)",
                        0.01),
    "llava-1.5-7b-text": (LLAVA_15_7B, 6.74e9, "Llama 2 paper: 7B = 6.74B (Vicuna's base)",
                          0.01),
    "nemotron-4-340b": (NEMOTRON4_340B, 340e9, "Nemotron-4 340B report (arXiv 2406.11704)",
                        0.02),
    "megatron-llama2-7b": (MEGATRON_LLAMA2_7B, 6.74e9, "Llama 2 paper: 7B = 6.74B", 0.01),
}


@pytest.mark.parametrize("model", PUBLISHED)
def test_parameter_count_matches_published(model: str) -> None:
    config, published, _source, tolerance = PUBLISHED[model]
    arch = architecture_from_hf_config(config, name=model)
    assert arch.params == pytest.approx(published, rel=tolerance)


def test_gptj_shapes() -> None:
    arch = architecture_from_hf_config(GPTJ_6B, name="gpt-j-6b")
    assert (arch.hidden, arch.layers, arch.heads, arch.kv_heads, arch.head_dim, arch.ffn) == (
        4096, 28, 16, 16, 256, 16384)
    assert arch.context == 2048 and not arch.tied


@pytest.mark.parametrize("config", [GPTJ_6B, PYTHIA_1B, FALCON_7B, MPT_7B, BLOOM_560M,
                                    OPT_1_3B, NEMOTRON4_340B])
def test_two_matrix_ffns_are_counted_as_two(config: dict) -> None:
    arch = architecture_from_hf_config(config, name="m")
    assert arch.ffn_params(0) == 2 * arch.hidden * arch.ffn


@pytest.mark.parametrize("config", [LLAVA_15_7B, GEMMA3_4B, MEGATRON_LLAMA2_7B])
def test_gated_ffns_stay_three(config: dict) -> None:
    arch = architecture_from_hf_config(config, name="m")
    assert arch.ffn_params(0) == 3 * arch.hidden * arch.ffn


def test_falcon_kv_heads() -> None:
    seven = architecture_from_hf_config(FALCON_7B, name="falcon-7b")
    first_release = architecture_from_hf_config(FALCON_7B_RW, name="falcon-7b")
    forty = architecture_from_hf_config(FALCON_40B, name="falcon-40b")
    assert (seven.kv_heads, seven.head_dim, seven.ffn) == (1, 64, 4 * 4544)  # multi-query
    assert first_release.params == seven.params and first_release.kv_heads == 1
    assert forty.kv_heads == 8  # new_decoder_architecture: num_kv_heads, not multi_query
    assert seven.tied and forty.tied  # FalconConfig's default: the key is left out
    rw_40b = {"model_type": "RefinedWeb", "hidden_size": 8192, "n_head": 128, "n_head_kv": 8,
              "n_layer": 60, "vocab_size": 65024}  # tiiuae/falcon-40b's first release
    assert architecture_from_hf_config(rw_40b, name="falcon-40b").params == forty.params


def test_mpt_names() -> None:
    arch = architecture_from_hf_config(MPT_7B, name="mpt-7b")
    assert (arch.hidden, arch.layers, arch.heads, arch.kv_heads, arch.ffn, arch.context) == (
        4096, 32, 32, 32, 16384, 2048)
    assert arch.tied  # MPT reads logits off its token embedding
    gqa = {**MPT_7B, "attn_config": {"attn_type": "grouped_query_attention", "kv_n_heads": 8}}
    assert architecture_from_hf_config(gqa, name="mpt-gqa").kv_heads == 8
    # llm-foundry writes kv_n_heads (default 1) even for plain multi-head attention
    mha = {**MPT_7B, "attn_config": {"attn_type": "multihead_attention", "kv_n_heads": 1}}
    assert architecture_from_hf_config(mha, name="mpt").kv_heads == 32
    glu = {**MPT_7B, "ffn_config": {"ffn_type": "mptglu", "ffn_hidden_size": 11008}}
    arch = architecture_from_hf_config(glu, name="mpt-glu")
    assert arch.ffn == 11008 and arch.ffn_params(0) == 3 * 4096 * 11008


def test_opt_and_bloom() -> None:
    opt = architecture_from_hf_config(OPT_1_3B, name="opt-1.3b")
    assert (opt.ffn, opt.context, opt.tied) == (8192, 2048, True)
    bloom = architecture_from_hf_config(BLOOM_176B, name="bloom")
    assert (bloom.hidden, bloom.heads, bloom.layers, bloom.ffn) == (14336, 112, 70, 4 * 14336)


def test_megatron_names() -> None:
    arch = architecture_from_hf_config(NEMOTRON4_340B, name="nemotron-4-340b")
    assert (arch.layers, arch.kv_heads, arch.head_dim, arch.ffn, arch.context) == (
        96, 8, 192, 73728, 4096)
    assert not arch.tied
    llama = architecture_from_hf_config(MEGATRON_LLAMA2_7B, name="llama2-7b")
    assert (llama.kv_heads, llama.vocab, llama.context, llama.tied) == (32, 32000, 4096, False)
    gelu = {k: v for k, v in NEMOTRON4_340B.items() if k != "activation"}
    assert architecture_from_hf_config(gelu, name="m").ffn_params(0) == 2 * 18432 * 73728
    swiglu = {**NEMOTRON4_340B, "activation": "fast-swiglu"}
    assert architecture_from_hf_config(swiglu, name="m").ffn_params(0) == 3 * 18432 * 73728


def test_text_config_fills_class_defaults() -> None:
    gemma = architecture_from_hf_config(GEMMA3_4B, name="gemma-3-4b-it")
    assert (gemma.family, gemma.hidden, gemma.heads, gemma.kv_heads, gemma.head_dim) == (
        "gemma3_text", 2560, 8, 4, 256)
    assert (gemma.vocab, gemma.sliding_window, gemma.swa_pattern, gemma.tied) == (
        262208, 1024, 6, True)
    llava = architecture_from_hf_config(LLAVA_15_7B, name="llava-1.5-7b-hf")
    assert (llava.hidden, llava.layers, llava.ffn, llava.vocab, llava.context) == (
        4096, 32, 11008, 32064, 4096)


@pytest.mark.parametrize(("config", "named", "not_named"), [
    ({"model_type": "mpt", "n_heads": 32, "n_layers": 32, "vocab_size": 50432},
     ["d_model"], ["n_heads", "vocab_size"]),
    ({k: v for k, v in NEMOTRON4_340B.items() if k != "vocab_size"},
     ["vocab_size", "padded_vocab_size"], ["num_layers"]),
    ({"model_type": "mamba", "d_model": 768, "n_layer": 24, "vocab_size": 50280},
     ["hidden_size", "num_attention_heads", "n_heads"], ["d_model", "n_layer"]),
    ({"model_type": "llava", "text_config": {"model_type": "qwen9", "hidden_size": 64}},
     ["num_attention_heads", "num_hidden_layers", "vocab_size"], ["hidden_size"]),
])
def test_unreadable_configs_name_the_missing_keys(config: dict, named: list[str],
                                                  not_named: list[str]) -> None:
    with pytest.raises(UnknownArchitectureError) as info:
        architecture_from_hf_config(config, name="m")
    message = str(info.value)
    assert "\n" not in message
    for key in named:
        assert key in message
    for key in not_named:
        assert f" {key}" not in message and f"({key}" not in message


def test_fit_reads_a_falcon_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "falcon-7b" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(FALCON_7B))
    assert run_app(["fit", str(path), "--on", "rtx-4090", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["fits"] and fit["params"] == pytest.approx(6.92e9, rel=0.01)

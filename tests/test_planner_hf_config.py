"""Hugging Face ``config.json`` files the planner reads: GPT-2's names, and one-line errors
(exit 2 through the CLI) for a config it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskai.cli import run_app
from deskai.errors import InvalidModelFileError, UnknownArchitectureError
from deskai.planner import read_hf_config
from deskai.planner.readers import architecture_from_hf_config

# openai-community/gpt2's config.json, the keys the planner reads
GPT2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024,
        "n_ctx": 1024, "n_inner": None, "vocab_size": 50257}


def write_config(directory: Path, config: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_gpt2_names() -> None:
    arch = architecture_from_hf_config(GPT2, name="gpt2")
    assert (arch.family, arch.hidden, arch.layers, arch.heads, arch.kv_heads, arch.head_dim) == (
        "gpt2", 768, 12, 12, 12, 64)
    assert arch.ffn == 4 * 768 and arch.context == 1024 and arch.vocab == 50257
    assert arch.tied  # GPT-2's LM head is its embedding; the config leaves the key out


def test_gpt2_n_inner_and_n_ctx() -> None:
    config = {**GPT2, "n_inner": 2048}
    del config["n_positions"]
    arch = architecture_from_hf_config(config, name="gpt2-variant")
    assert arch.ffn == 2048 and arch.context == 1024


def test_llama_names_still_win() -> None:
    config = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
              "num_key_value_heads": 8, "num_hidden_layers": 32, "intermediate_size": 14336,
              "vocab_size": 128256, "max_position_embeddings": 131072}
    arch = architecture_from_hf_config(config, name="llama")
    assert (arch.hidden, arch.heads, arch.kv_heads, arch.ffn, arch.context) == (
        4096, 32, 8, 14336, 131072)
    assert not arch.tied


def test_missing_keys_are_named() -> None:
    with pytest.raises(UnknownArchitectureError) as info:
        architecture_from_hf_config({"model_type": "t5", "d_model": 512, "vocab_size": 32128},
                                    name="t5")
    message = str(info.value)
    assert "\n" not in message
    for key in ("hidden_size", "n_embd", "num_attention_heads", "n_head", "num_hidden_layers",
                "n_layer"):
        assert key in message
    assert "vocab_size" not in message  # present, so not named


@pytest.mark.parametrize("value", ["768", 0, -768, 768.5, True, [768]])
def test_bad_values_are_refused(value: object) -> None:
    with pytest.raises(InvalidModelFileError, match="n_embd"):
        architecture_from_hf_config({**GPT2, "n_embd": value}, name="gpt2")


def test_config_that_is_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFileError, match="JSON object"):
        read_hf_config(write_config(tmp_path / "list", [1, 2, 3]))


PLAN = ["plan", "train", "--gpus", "8", "--gpu", "h100", "--tokens", "10B"]


def test_plan_train_reads_a_gpt2_config(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "gpt2", GPT2)
    assert run_app([*PLAN, "--model", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["model"] == "gpt2" and plan["total_flops"] > 0


@pytest.mark.parametrize(("config", "needle"), [
    ({"model_type": "t5", "d_model": 512, "vocab_size": 32128}, "n_embd"),
    ({**GPT2, "n_head": 0}, "n_head"),
    ("not an object", "JSON object"),
])
def test_plan_train_unreadable_config_is_one_line_and_exit_2(
        config: object, needle: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "model", config)
    assert run_app([*PLAN, "--model", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err

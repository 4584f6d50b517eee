"""The planner verbs through the CLI: JSON fields, one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deskai.cli import app, run_app

runner = CliRunner()


def _json(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_fit_json_fields() -> None:
    data = _json(["fit", "llama3-8b", "--on", "dgx-spark", "--context", "8192", "--json"])
    for key in ("fits", "quant", "context", "max_context", "memory_bytes",
                "decode_tokens_per_s", "prefill_tokens_per_s"):
        assert key in data
    assert set(data["memory_bytes"]) == {"weights", "kv_cache", "compute", "overhead", "total"}
    assert data["context"] == 8192 and data["fits"] is True


def test_fit_list() -> None:
    rows = json.loads(runner.invoke(app, ["fit", "--on", "dgx-spark", "--list", "--json"]).stdout)
    assert rows[0]["fits"] and not rows[-1]["fits"]


def test_plan_train_json_fields() -> None:
    data = _json(["plan", "train", "--model", "llama3-405b", "--tokens", "15.6T", "--gpus",
                  "16384", "--gpu", "h100", "--json"])
    for key in ("total_flops", "layout", "mfu", "tflops_per_gpu", "days", "gpu_hours",
                "energy_mwh", "memory_per_gpu_bytes"):
        assert key in data
    assert {"tp", "pp", "dp", "cp"} <= set(data["layout"])
    cluster = _json(["plan", "train", "--model", "llama3-70b", "--cluster", "colossus",
                     "--tokens", "2T", "--json"])
    assert cluster["gpus"] == 100_000


def test_hw_catalog_json() -> None:
    data = _json(["hw", "--catalog", "--json"])
    assert any(a["key"] == "gb10" for a in data["accelerators"])
    local = _json(["hw", "--no-measure", "--json"])
    assert local["physical_cores"] >= 1


@pytest.mark.parametrize(("argv", "needle"), [
    (["fit", "lama3-8b", "--on", "dgx-spark"], "llama3-8b"),
    (["fit", "llama3-8b", "--on", "dgx-sprak"], "dgx-spark"),
    (["fit", "llama3-8b", "--on", "dgx-spark", "--context", "-5"], "positive"),
    (["fit", "llama3-8b", "--on", "dgx-spark", "--batch", "-1"], "positive"),
    (["plan", "train", "--model", "llama3-8b", "--gpus", "-8", "--gpu", "h100"], "positive"),
    (["plan", "train", "--model", "llama3-8b", "--tokens", "-1T", "--gpus", "8", "--gpu",
      "h100"], "positive"),
    (["plan", "train", "--model", "llama3-8b", "--gpus", "8", "--gpu", "h1OO"], "h100"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err

"""Predicted vs measured on this machine: llama.cpp's peak RSS for the real Gemma 3 270M.

Each configuration is measured in a fresh subprocess (peak RSS is per process) by
bench/measure_llamacpp.py. Tolerance: memory within 10% (the issue's target). Speeds are
printed, not asserted: this machine's two cores are shared, so timings are too noisy to gate
on (docs/planner.md reports them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deskai.planner import load_model
from deskai.planner.memory import Runtime, memory_breakdown

pytest.importorskip("llama_cpp")

MEASURE = Path(__file__).resolve().parents[1] / "bench" / "measure_llamacpp.py"
TOLERANCE = 0.10


def _measure(model: Path, n_ctx: int, swa_full: bool) -> dict:
    out = subprocess.run([sys.executable, str(MEASURE), str(model), str(n_ctx),
                          "1" if swa_full else "0", "64"],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(("n_ctx", "swa_full"), [(4096, False), (16384, True)])
def test_peak_rss_within_tolerance(real_gguf: Path, n_ctx: int, swa_full: bool) -> None:
    model = load_model(str(real_gguf))
    predicted = memory_breakdown(model.architecture,
                                 Runtime(context=n_ctx, swa_full=swa_full, prompt_tokens=64),
                                 model_file=model).resident
    measured = _measure(real_gguf, n_ctx, swa_full)
    print(f"n_ctx={n_ctx} swa_full={swa_full}: predicted {predicted / 2**20:.1f} MiB, "
          f"measured {measured['peak_rss_bytes'] / 2**20:.1f} MiB, decode "
          f"{measured['decode_tokens_per_s']:.1f} tok/s")
    assert predicted == pytest.approx(measured["peak_rss_bytes"], rel=TOLERANCE)

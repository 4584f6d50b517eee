"""Predicted vs measured on this machine: llama.cpp's peak RSS and tok/s.

Memory: the real Gemma 3 270M, each configuration in a fresh subprocess (peak RSS is per
process) by bench/measure_llamacpp.py; tolerance 10% (the issue's target).

Speed (batch 1, two threads, llama-cpp-python): Gemma 3 270M and a tiny random-weight llama
(bench/tiny_gguf.py, GPT-2's real tokenizer from llama.cpp's ggml-vocab files), at two
contexts, measured by bench/measure_speed.py in a fresh subprocess. Tolerance: measured
decode and prefill within [0.4x, 2.5x] of predicted. That is wide on purpose: the two cores are
shared with other jobs, and CPU timings here move by 2x between runs. On a quiet machine
(load average ~0.6) measured/predicted was 0.76-1.26 for decode and 0.85-1.58 for prefill
(docs/planner.md). When other processes keep more than half of the CPU busy (sampled from
/proc/stat just before each measurement) the test skips: it would time the neighbours.
Batch > 1 through deskai's engine is a documented miss (0.28-0.63x) and is not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deskai.convert import llamacpp_sources
from deskai.errors import DeskaiError
from deskai.planner import load_model
from deskai.planner.memory import Runtime, memory_breakdown

pytest.importorskip("llama_cpp")

BENCH = Path(__file__).resolve().parents[1] / "bench"
MEASURE = BENCH / "measure_llamacpp.py"
TOLERANCE = 0.10
#: measured / predicted tok/s accepted on this shared 2-core machine (see the docstring)
SPEED_RATIO = (0.4, 2.5)
MAX_BUSY = 0.5  # share of all CPU time others may use while we measure
VOCAB_DIRS = [Path(os.environ.get("DESKAI_VOCAB_DIR", "/nonexistent")),
              Path.home() / ".cache/deskai-bench/llama_cpp_python-0.3.36/vendor/llama.cpp/models",
              Path.home() / ".cache/deskai/llama_cpp_python-0.3.36/vendor/llama.cpp/models"]


def _fetched_vocab_dir() -> Path:
    """llama.cpp's tokenizer files, fetched with the converters (pip, the package registry)."""
    try:
        return llamacpp_sources() / "models"
    except DeskaiError:
        return Path("/nonexistent")


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


def _others_busy(seconds: float = 0.5) -> float:
    """Share of all cores' time spent busy during a short sleep of ours (Linux; else 0)."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except OSError:
        return 0.0
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 8-layer, 512-wide llama with random f16 weights and GPT-2's 50,257-token vocabulary."""
    vocab = next((d / "ggml-vocab-gpt-2.gguf" for d in [*VOCAB_DIRS, _fetched_vocab_dir()]
                  if (d / "ggml-vocab-gpt-2.gguf").is_file()), None)
    if vocab is None:
        pytest.skip("no ggml-vocab-gpt-2.gguf (llama-cpp-python's sdist, or DESKAI_VOCAB_DIR)")
    out = tmp_path_factory.mktemp("tiny") / "tiny-b.gguf"
    subprocess.run([sys.executable, str(BENCH / "tiny_gguf.py"), str(vocab), str(out),
                    "512", "8", "1536", "8", "4"], check=True, timeout=120)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("which", ["gemma3:270m", "tiny"])
@pytest.mark.parametrize(("n_ctx", "prompt"), [(512, 64), (2048, 256)])
def test_speed_within_tolerance(request: pytest.FixtureRequest, which: str, n_ctx: int,
                                prompt: int) -> None:
    busy = _others_busy()
    if busy > MAX_BUSY:
        pytest.skip(f"other processes use {busy:.0%} of the CPU: timings would be theirs")
    path = request.getfixturevalue("real_gguf" if which == "gemma3:270m" else "tiny_gguf")
    misses: list[str] = []
    # up to three tries: a neighbour's burst can spoil one timing; a wrong model fails all three
    for _ in range(3):
        misses = _speed_misses(path, which, n_ctx, prompt)
        if not misses:
            return
    pytest.fail("; ".join(misses))


def _speed_misses(path: Path, which: str, n_ctx: int, prompt: int) -> list[str]:
    from deskai.hardware.local import detect
    from deskai.planner.roofline import speed

    model = load_model(str(path))
    device = detect().as_accelerator(threads=2)
    predicted = speed(model.architecture, device,
                      Runtime(context=n_ctx, prompt_tokens=prompt), model_file=model)
    out = subprocess.run([sys.executable, str(BENCH / "measure_speed.py"), str(path),
                          str(n_ctx), str(prompt), "1", "16"],
                         capture_output=True, text=True, timeout=120, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    low, high = SPEED_RATIO
    misses = []
    for kind, want in (("decode", predicted.decode_tokens_per_s),
                       ("prefill", predicted.prefill_tokens_per_s)):
        got = measured[f"{kind}_tokens_per_s"]
        line = (f"{which} n_ctx={n_ctx} prompt={prompt} {kind}: predicted {want:.1f}, measured "
                f"{got:.1f} tok/s ({got / want:.2f}x), load {measured['load_average']:.2f}")
        print(line)
        if not low * want <= got <= high * want:
            misses.append(line)
    return misses

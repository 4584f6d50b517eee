"""bench/gpu_check.sh, tested where there is no GPU: its arguments and dry run, the shaped GGUF
it writes (Llama 3 8B's shape at llama.cpp's Q4_K_M mix), what it carries, and the measurement
code paths on a toy model. Its GPU numbers come only from a run on a GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import gpu_carry  # noqa: E402
import gpu_check  # noqa: E402
from shaped_gguf import LLAMA3_8B, Shape, build, tensor_plan, use_more_bits  # noqa: E402

from deskai.planner import read_gguf  # noqa: E402
from deskai.store import read_gguf_header  # noqa: E402

SDIST = gpu_carry.sdist_dir("0.3.36")
VOCAB = SDIST / "vendor" / "llama.cpp" / "models" / "ggml-vocab-llama-bpe.gguf"
needs_sdist = pytest.mark.skipif(not VOCAB.is_file(),
                                 reason="llama-cpp-python 0.3.36's sdist is not unpacked here")


def script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(BENCH / "gpu_check.sh"), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_arguments() -> None:
    assert script("--help").returncode == 0
    assert script("bogus").returncode == 2
    missing_out = script("run")
    assert missing_out.returncode == 2 and "--out" in missing_out.stderr


@pytest.mark.slow  # seconds of real work (a GGUF written, llama.cpp run)
def test_dry_run_checks_every_precondition_and_prints_the_plan(tmp_path: Path) -> None:
    done = script("run", "--dry-run", "--out", str(tmp_path))
    checked = {line[4:].split()[0] for line in done.stdout.splitlines()
               if line[:3] in ("ok ", "NO ")}
    assert checked >= {"carry", "cmake", "nvcc", "nvidia-smi", "gpu", "cublas", "libcuda",
                       "python:torch", "python:transformers", "python:peft", "disk", "out",
                       "python:trl"}
    plan = done.stdout.split("plan:")[1]
    for step in ("build", "gguf", "planner", "tune-trl", "llama-bench", "batched-bench",
                 "engine", "tune-deskai"):
        assert f". {step} " in plan or f". {step}:" in plan, step
    assert "-DGGML_CUDA=ON" in plan and "-DCMAKE_CUDA_ARCHITECTURES=" in plan
    # no GPU here: the dry run says it is not ready, and runs nothing
    assert done.returncode == 1 and "ready: no" in done.stdout
    assert not (tmp_path / "gpu_check.json").exists()


def test_q4_k_m_mix_is_llama_cpps() -> None:
    more = [i for i in range(32) if use_more_bits(i, 32)]
    assert more == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
    plan = tensor_plan(LLAMA3_8B, vocab=128256)
    types = {t.name: t.type for t in plan}
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_K"
    assert types["blk.0.attn_v.weight"] == types["blk.0.ffn_down.weight"] == "Q6_K"
    assert types["blk.4.attn_v.weight"] == types["blk.4.ffn_down.weight"] == "Q4_K"
    assert len(plan) == 2 + 32 * 9 + 1
    # published Meta-Llama-3-8B Q4_K_M GGUFs are 4.92 GB (bartowski, QuantFactory)
    assert sum(t.nbytes for t in plan) == pytest.approx(4.92e9, rel=0.01)


@pytest.mark.slow  # seconds of real work (a GGUF written, llama.cpp run)
@needs_sdist
def test_shaped_gguf_has_llama3_8b_header(tmp_path: Path) -> None:
    out = tmp_path / "one-layer.gguf"
    written = build(VOCAB, out, Shape(layers=1))
    header = read_gguf_header(out)
    assert header.fields["general.architecture"] == "llama"
    assert header.fields["general.file_type"] == 15  # MOSTLY_Q4_K_M
    by_name = {t.name: t for t in header.tensors}
    assert by_name["blk.0.ffn_gate.weight"].dims == (4096, 14336)
    assert by_name["blk.0.attn_k.weight"].dims == (4096, 1024)
    assert by_name["output.weight"].type_name == "Q6_K"
    model = read_gguf(out)
    arch = model.architecture
    assert (arch.hidden, arch.heads, arch.kv_heads, arch.ffn, arch.vocab, arch.context) == (
        4096, 32, 8, 14336, 128256, 8192)
    assert model.weight_bytes == written and model.quantization == "q4_k_m"


@pytest.mark.slow  # seconds of real work (a GGUF written, llama.cpp run)
@needs_sdist
def test_llama_cpp_runs_the_random_blocks(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    out = tmp_path / "narrow.gguf"
    build(VOCAB, out, Shape(layers=2, hidden=256, heads=4, kv_heads=2, ffn=512))
    model = llama_cpp.Llama(str(out), n_ctx=128, n_threads=1, verbose=False)
    text = model.create_completion("The Eiffel Tower is in", max_tokens=6, temperature=0)
    assert text["usage"]["completion_tokens"] >= 1  # noise, but llama.cpp's own noise


@needs_sdist
def test_carry_fits_the_device_limit(tmp_path: Path) -> None:
    pruned = tmp_path / "llama.cpp"
    gpu_carry.prune_llama_cpp(SDIST / "vendor" / "llama.cpp", pruned)
    for needed in ("CMakeLists.txt", "ggml/src/ggml-cuda/CMakeLists.txt",
                   "tools/llama-bench/llama-bench.cpp", "tools/batched-bench/batched-bench.cpp",
                   "vendor/nlohmann", "models/ggml-vocab-llama-bpe.gguf"):
        assert (pruned / needed).exists(), needed
    assert not (pruned / "ggml" / "src" / "ggml-vulkan").exists()
    sources = gpu_carry.tree_bytes([pruned, SDIST / "llama_cpp",
                                    SDIST / "vendor" / "llama.cpp" / "gguf-py" / "gguf"])
    wheels = 4 * 2**20  # diskcache + TRL, datasets, dill, multiprocess unpacked: ~3.6 MB
    assert sources + wheels + gpu_carry.travelling_bytes() < gpu_carry.LIMIT_BYTES
    if gpu_carry.CARRY.is_dir():  # a prepared carry: its real size
        carried = gpu_carry.tree_bytes([gpu_carry.CARRY]) + gpu_carry.travelling_bytes()
        assert carried < gpu_carry.LIMIT_BYTES


def test_results_are_rewritten_after_every_step(tmp_path: Path) -> None:
    run = gpu_check.Run(tmp_path, budget=60)
    run.record("gguf", {"ok": True})
    run.record("planner", {"ok": False, "error": "x"})
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["gguf"] == {"ok": True} and data["planner"]["error"] == "x"
    assert 1 <= run.timeout("engine") <= gpu_check.BUDGETS["engine"]


def test_a_step_that_overruns_is_killed_with_its_children(tmp_path: Path) -> None:
    outcome = gpu_check.command(["bash", "-c", "sleep 30 & sleep 30"], 1, tmp_path / "log")
    assert not outcome["ok"] and "timed out" in outcome["error"]
    assert outcome["seconds"] < 10


def test_a_child_result_line_is_parsed() -> None:
    good = {"ok": True, "seconds": 2.0, "stdout": 'noise\nRESULT {"tokens": 5}\n'}
    assert gpu_check.result_line(good) == {"seconds": 2.0, "tokens": 5}
    bad = gpu_check.result_line({"ok": False, "seconds": 1.0, "stdout": "Traceback ..."})
    assert not bad["ok"] and "Traceback" in bad["stdout_tail"]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tune-deskai", "tune-trl"])
def test_tuning_code_paths_on_a_toy_model(which: str) -> None:
    pytest.importorskip("peft")
    if which == "tune-trl":
        pytest.importorskip("trl")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(BENCH / "gpu_measure.py"), which, "--tiny",
                           "--threads", "1", "--device", "cpu"], capture_output=True,
                          text=True, env=env, timeout=600)
    result = gpu_check.result_line({"ok": done.returncode == 0, "seconds": 0,
                                    "stdout": done.stdout + done.stderr[-2000:]})
    assert result.get("device") == "cpu" and result["tokens"] > 1000, result
    assert result["tokens_per_second"] > 0


@pytest.mark.slow
@needs_sdist
def test_engine_code_path_on_a_narrow_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    out = tmp_path / "narrow.gguf"
    build(VOCAB, out, Shape(layers=2, hidden=256, heads=4, kv_heads=2, ffn=512))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(BENCH / "gpu_measure.py"), "engine", str(out),
                           "--levels", "1,4", "--gpu-layers", "0", "--prompt-tokens", "32",
                           "--output-tokens", "16"], capture_output=True, text=True, env=env,
                          timeout=300)
    result = gpu_check.result_line({"ok": done.returncode == 0, "seconds": 0,
                                    "stdout": done.stdout + done.stderr[-2000:]})
    assert [row["streams"] for row in result["levels"]] == [1, 4], result
    assert all(row["output_tokens"] > 0 for row in result["levels"])

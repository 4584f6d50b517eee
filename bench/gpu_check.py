"""The GPU check in one go: llama.cpp's CUDA build, llama-bench and deskai's engine on Llama 3
8B's shape at Q4_K_M, and LoRA tuning, on a machine that can fetch nothing (bench/gpu_check.sh).

    prepare            here: bench/build/gpu-carry/ (bench/gpu_carry.py), sized against 64 MiB
    run --dry-run      check every step's preconditions and print the plan; run nothing
    run --out DIR      everything, within --budget seconds; DIR/gpu_check.json after each step

Steps, in the order they start (the build compiles on every core while the GPU is idle, so the
GGUF is written, the planner asked, and both tuners train on the GPU meanwhile, the build at
nice 10 beside them; the JSON marks those steps ``during_build``):

    build         cmake: llama.cpp shared libs + llama-bench + llama-batched-bench, CUDA for
                  this GPU's architecture only (nvidia-smi's compute capability)
    gguf          bench/shaped_gguf.py: random Llama 3 8B, llama.cpp's Q4_K_M mix (4.9 GB)
    planner       deskai fit's decode/prefill predictions for that file on the catalog's h200
    tune-trl      bench/gpu_measure.py tune-trl (skipped, and said so, if TRL does not import)
    tune-deskai   bench/gpu_measure.py tune-deskai (deskai tune's loop, --device auto)
    llama-bench   1 stream: pp512, tg128, every layer on the GPU, flash attention
    engine        deskai's LlamaCppEngine in process, 1/16/64 streams of 128 + 128 tokens
    batched-bench llama.cpp's own 1/16/64 streams of 128 prompt + 128 generated tokens
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gpu_carry

ROOT = gpu_carry.ROOT
CARRY = gpu_carry.CARRY
LLAMA = CARRY / "llama.cpp"
VOCAB = LLAMA / "models" / "ggml-vocab-llama-bpe.gguf"
BUILD = ROOT / "bench" / "build" / "gpu-build"
WORK = ROOT / "bench" / "build" / "gpu-work"
GGUF = WORK / "llama3-8b-shape-q4_k_m.gguf"
BIN = BUILD / "bin"
STREAMS = (1, 16, 64)
#: Seconds each step may take at most; the whole run is also held to --budget.
#: The CUDA build is the long pole: ~144 nvcc jobs of 20-40 s each for one architecture
#: (timed here, one core each) on 16 cores, with llama.cpp's C++ beside them.
BUDGETS = {"build": 400, "gguf": 120, "planner": 30, "tune-trl": 150, "llama-bench": 60,
           "engine": 120, "batched-bench": 90, "tune-deskai": 120}


# -- preconditions ----------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _which(*names: str) -> str | None:
    return next((found for n in names if (found := shutil.which(n))), None)


def gpu_arch() -> str | None:
    """This GPU's architecture for CMAKE_CUDA_ARCHITECTURES ("9.0" -> "90"), or None."""
    smi = _which("nvidia-smi")
    if smi is None:
        return None
    done = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                          capture_output=True, text=True)
    caps = done.stdout.split()
    return caps[0].replace(".", "") if done.returncode == 0 and caps else None


def _site_dirs() -> list[Path]:
    import site

    return [Path(p) for p in {*site.getsitepackages(), site.getusersitepackages()}]


def cublas_flags(nvcc: str | None) -> tuple[list[str], str]:
    """CMake flags that find cuBLAS: none when the toolkit has it, else the pip wheel's
    (nvidia/cu13 or nvidia/cublas, as PyTorch installs it) — CMake's FindCUDAToolkit looks
    only in the toolkit."""
    if nvcc and list((Path(nvcc).resolve().parent.parent / "lib64").glob("libcublas.so*")):
        return [], "in the CUDA toolkit"
    for site_dir in _site_dirs():
        for lib in sorted(site_dir.glob("nvidia/*/lib/libcublas.so*")):
            root = lib.parent.parent
            blas_lt = next(iter(sorted(root.glob("lib/libcublasLt.so*"))), None)
            if blas_lt and (root / "include" / "cublas_v2.h").is_file():
                return [f"-DCUDA_cublas_LIBRARY={lib}", f"-DCUDA_cublasLt_LIBRARY={blas_lt}",
                        f"-DCMAKE_CUDA_FLAGS=-I{root / 'include'}"], f"pip wheel at {root}"
    return [], "not found"


def libcuda_flags(nvcc: str | None) -> tuple[list[str], str]:
    """The driver library to link (CUDA::cuda_driver): the toolkit's stub, else the driver's."""
    places = [Path(nvcc).resolve().parent.parent / "lib64" / "stubs"] if nvcc else []
    places += [Path("/usr/local/nvidia/lib64"), Path("/usr/lib/x86_64-linux-gnu"),
               Path("/usr/lib64"), Path("/usr/local/cuda/lib64/stubs")]
    for place in places:
        found = sorted(place.glob("libcuda.so*"))
        if found:
            return [f"-DCUDA_cuda_driver_LIBRARY={found[0]}"], str(found[0])
    return [], "not found"


def python_module(name: str, env: dict[str, str]) -> tuple[bool, str]:
    """Whether ``name`` imports in a fresh interpreter with the carried packages on the path."""
    done = subprocess.run([sys.executable, "-c", f"import {name}; print({name}.__version__)"],
                          capture_output=True, text=True, env=env, timeout=120)
    last = (done.stdout or done.stderr).strip().splitlines()
    return done.returncode == 0, last[-1] if last else ""


def child_env() -> dict[str, str]:
    paths = [str(ROOT / "src"), str(CARRY / "py"), str(ROOT / "bench")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "LLAMA_CPP_LIB_PATH": str(BIN),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "0"}


def preconditions(out: Path | None) -> list[Check]:
    env = child_env()
    nvcc = _which("nvcc")
    checks = [Check("carry", all(p.exists() for p in (
        LLAMA / "CMakeLists.txt", LLAMA / "ggml" / "src" / "ggml-cuda",
        LLAMA / "tools" / "llama-bench", VOCAB, CARRY / "py" / "llama_cpp",
        CARRY / "py" / "gguf", CARRY / "py" / "diskcache")),
        f"{CARRY} (bench/gpu_check.sh prepare makes it)")]
    checks += [Check(tool, _which(tool) is not None, _which(tool) or "not on PATH")
               for tool in ("cmake", "nvcc", "nvidia-smi")]
    compiler = _which("c++", "g++", "clang++")
    checks.append(Check("c++", compiler is not None, compiler or "no C++ compiler"))
    arch = gpu_arch()
    checks.append(Check("gpu", arch is not None, f"compute capability {arch}" if arch
                        else "no GPU answered nvidia-smi"))
    for name, finder in (("cublas", cublas_flags), ("libcuda", libcuda_flags)):
        where = finder(nvcc)[1]
        checks.append(Check(name, where != "not found", where))
    for module in ("torch", "transformers", "peft", "numpy"):
        ok, detail = python_module(module, env)
        checks.append(Check(f"python:{module}", ok, detail))
    free = shutil.disk_usage(ROOT).free
    checks.append(Check("disk", free > 10e9, f"{free / 1e9:.0f} GB free (10 needed)"))
    if out is not None:
        checks.append(Check("out", out.is_dir() and os.access(out, os.W_OK), str(out)))
    return checks


#: Preconditions whose failure only skips a step (TRL is optional; the plan says so).
OPTIONAL = {"python:trl"}


# -- running ----------------------------------------------------------------------------------


@dataclass
class Run:
    """The results file, rewritten after every step so a timeout still leaves what was done."""

    out: Path
    budget: float
    started: float = field(default_factory=time.monotonic)
    data: dict[str, Any] = field(default_factory=dict)

    def remaining(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def timeout(self, step: str) -> float:
        return max(1.0, min(BUDGETS[step], self.remaining() - 5))

    def record(self, step: str, value: Any) -> None:
        self.data[step] = value
        self.data["elapsed_s"] = round(time.monotonic() - self.started, 1)
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str))


def _kill(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the step's own process group only


def command(cmd: list[str], timeout: float, log: Path, env: dict[str, str] | None = None,
            ) -> dict[str, Any]:
    """Run ``cmd`` in its own process group (a timeout kills nvcc and ninja too)."""
    started = time.monotonic()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=ROOT, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        outcome = {"ok": process.returncode == 0, "returncode": process.returncode}
    except subprocess.TimeoutExpired:
        _kill(process)
        stdout, stderr = process.communicate()
        outcome = {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    with log.open("a") as sink:
        sink.write(f"\n$ {' '.join(cmd)}\n{stderr}{stdout}")
    return {**outcome, "seconds": time.monotonic() - started, "stdout": stdout,
            "stderr_tail": stderr[-2000:]}


def result_line(outcome: dict[str, Any]) -> dict[str, Any]:
    """A measurement child's ``RESULT {...}`` line, or what went wrong."""
    lines = [ln for ln in outcome.get("stdout", "").splitlines() if ln.startswith("RESULT ")]
    if outcome["ok"] and lines:
        return {"seconds": outcome["seconds"], **json.loads(lines[-1].removeprefix("RESULT "))}
    return {k: v for k, v in outcome.items() if k != "stdout"} | {
        "stdout_tail": outcome.get("stdout", "")[-2000:]}


def build_commands(arch: str) -> list[list[str]]:
    nvcc = _which("nvcc")
    generator = ["-G", "Ninja"] if _which("ninja") else []
    configure = ["cmake", "-S", str(ROOT / "bench" / "gpu_cmake"), "-B", str(BUILD),
                 *generator, f"-DLLAMA_SRC={LLAMA}", "-DCMAKE_BUILD_TYPE=Release",
                 "-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={arch}", "-DGGML_NATIVE=ON",
                 *cublas_flags(nvcc)[0], *libcuda_flags(nvcc)[0]]
    build = ["cmake", "--build", str(BUILD), "--target", "llama", "llama-bench",
             "llama-batched-bench", "-j", str(os.cpu_count() or 8)]
    return [configure, build]


def step_build_start(arch: str, log: Path) -> subprocess.Popen[Any]:
    """Configure and build in the background (nice 10: the steps meanwhile keep priority)."""
    script = " && ".join(" ".join(f"'{a}'" for a in cmd) for cmd in build_commands(arch))
    script += ' && echo "build took $SECONDS s"'  # bash's own clock: the build's duration
    with log.open("a") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(["nice", "-n", "10", "bash", "-c", script], stdout=sink,
                                stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


def step_gguf(run: Run, log: Path) -> dict[str, Any]:
    if GGUF.is_file() and GGUF.stat().st_size > 4.9e9:
        return {"ok": True, "reused": str(GGUF), "bytes": GGUF.stat().st_size}
    WORK.mkdir(parents=True, exist_ok=True)
    outcome = command([sys.executable, str(ROOT / "bench" / "shaped_gguf.py"), str(VOCAB),
                       str(GGUF)], run.timeout("gguf"), log, child_env())
    return {k: v for k, v in outcome.items() if k not in ("stdout", "stderr_tail")} | {
        "bytes": GGUF.stat().st_size if GGUF.is_file() else 0}


def step_planner() -> dict[str, Any]:
    """What deskai fit predicts for this file on the catalog's H200, per stream count."""
    from deskai.hardware import load_catalog
    from deskai.planner import fit, read_gguf

    model, h200 = read_gguf(GGUF), load_catalog().system("h200")
    rows = []
    for streams in STREAMS:
        fitted = fit(model, h200, context=256, batch=streams, prompt_tokens=128)
        rows.append({"streams": streams, "decode_tok_s": fitted.speed.decode_tokens_per_s,
                     "prefill_tok_s": fitted.speed.prefill_tokens_per_s,
                     "decode_bound": fitted.speed.decode_bound})
    return {"hardware": "h200", "weight_bytes": model.weight_bytes, "rows": rows}


def measure(which: list[str], step: str, run: Run, log: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_measure.py"), *which]
    return result_line(command(cmd, run.timeout(step), log, child_env()))


def step_llama_bench(run: Run, log: Path) -> dict[str, Any]:
    outcome = command([str(BIN / "llama-bench"), "-m", str(GGUF), "-ngl", "99", "-fa", "1",
                       "-p", "512", "-n", "128", "-r", "3", "-o", "json"],
                      run.timeout("llama-bench"), log)
    if not outcome["ok"]:
        return result_line(outcome)
    tests = json.loads(outcome["stdout"])
    return {"seconds": outcome["seconds"], "tests": [
        {k: t.get(k) for k in ("n_prompt", "n_gen", "avg_ts", "stddev_ts", "gpu_info",
                               "build_commit", "flash_attn", "n_gpu_layers")} for t in tests]}


def step_batched_bench(run: Run, log: Path) -> dict[str, Any]:
    streams = ",".join(str(s) for s in STREAMS)
    outcome = command([str(BIN / "llama-batched-bench"), "-m", str(GGUF), "-ngl", "99",
                       "-fa", "on", "-c", str(max(STREAMS) * 256), "-b", "2048", "-ub", "512",
                       "-npp", "128", "-ntg", "128", "-npl", streams,
                       "--output-format", "jsonl"], run.timeout("batched-bench"), log)
    rows = [json.loads(ln) for ln in outcome.get("stdout", "").splitlines()
            if ln.startswith('{"n_kv_max"')]
    return {"ok": outcome["ok"] and bool(rows), "seconds": outcome["seconds"], "rows": rows}


def wait_build(process: subprocess.Popen[Any], run: Run, log: Path) -> dict[str, Any]:
    try:
        process.wait(timeout=max(1.0, BUDGETS["build"] - (time.monotonic() - run.started)))
    except subprocess.TimeoutExpired:
        _kill(process)
        process.wait()
        return {"ok": False, "error": f"build did not finish in {BUDGETS['build']} s",
                "log_tail": log.read_text()[-3000:]}
    built = [p.name for p in (BIN / "libllama.so", BIN / "llama-bench",
                              BIN / "llama-batched-bench") if p.is_file()]
    text = log.read_text()
    took = [ln.split()[2] for ln in text.splitlines() if ln.startswith("build took ")]
    ok = process.returncode == 0 and len(built) == 3
    return {"ok": ok, "returncode": process.returncode, "built": built,
            "seconds": float(took[-1]) if took else None,
            **({} if ok else {"log_tail": text[-3000:]})}


def environment(modules: dict[str, str]) -> dict[str, Any]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unavailable: {exc}"

    return {"gpu": out(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,"
                        "compute_cap", "--format=csv,noheader"]),
            "nvcc": out(["nvcc", "--version"]).splitlines()[-1:],
            "cpus": os.cpu_count(), "python": platform.python_version(), "modules": modules}


def run_all(out: Path, budget: float) -> int:
    run = Run(out, budget)
    log = out / "gpu_check.log"
    arch = gpu_arch() or "native"
    build_log = out / "build.log"
    building = step_build_start(arch, build_log)  # first: it is the long pole
    run.record("build", {"started": True, "arch": arch})
    imports = {m: python_module(m, child_env()) for m in ("torch", "transformers", "peft", "trl")}
    run.record("environment", environment({m: d for m, (_, d) in imports.items()}))
    run.record("gguf", step_gguf(run, log))
    run.record("planner", _guard(step_planner))
    trl_ok, trl_detail = imports["trl"]
    run.record("tune-trl", {"during_build": True, **measure(["tune-trl"], "tune-trl", run, log)}
               if trl_ok else {"ok": False, "skipped": f"TRL does not import: {trl_detail}"})
    run.record("tune-deskai", {"during_build": True, **measure(
        ["tune-deskai", "--samples", "16"], "tune-deskai", run, log)})
    run.record("build", {"arch": arch, **wait_build(building, run, build_log)})
    if run.data["build"]["ok"]:  # most wanted first, in case the budget runs out
        run.record("llama-bench", step_llama_bench(run, log))
        run.record("engine", measure(["engine", str(GGUF), "--levels",
                                      ",".join(map(str, STREAMS))], "engine", run, log))
        run.record("batched-bench", step_batched_bench(run, log))
    return 0 if run.data["build"]["ok"] else 1


def _guard(step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return step()
    except Exception as exc:  # a planner bug must not cost the GPU measurements
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def plan(arch: str) -> list[str]:
    """The steps as they would run, commands included."""
    configure, build = build_commands(arch)
    return [f"build (background, nice 10, <= {BUDGETS['build']} s): {' '.join(configure)} && "
            f"{' '.join(build)}",
            f"gguf (<= {BUDGETS['gguf']} s): shaped_gguf.py {VOCAB.name} -> {GGUF}",
            "planner: deskai fit on h200, streams " + "/".join(map(str, STREAMS)),
            f"tune-trl (<= {BUDGETS['tune-trl']} s, GPU): gpu_measure.py tune-trl "
            "(skipped if TRL does not import)",
            f"tune-deskai (<= {BUDGETS['tune-deskai']} s, GPU): gpu_measure.py tune-deskai",
            "wait for the build",
            f"llama-bench (<= {BUDGETS['llama-bench']} s): -ngl 99 -fa 1 -p 512 -n 128 -r 3",
            f"engine (<= {BUDGETS['engine']} s): gpu_measure.py engine, streams "
            + ",".join(map(str, STREAMS)),
            f"batched-bench (<= {BUDGETS['batched-bench']} s): -npp 128 -ntg 128 -npl "
            + ",".join(map(str, STREAMS))]


def dry_run(out: Path | None) -> int:
    checks = preconditions(out)
    ok, trl = python_module("trl", child_env())
    checks.append(Check("python:trl", ok, trl if ok else f"absent: tune-trl is skipped ({trl})"))
    for check in checks:
        print(f"{'ok ' if check.ok else 'NO '} {check.name:20} {check.detail}")
    print("\nplan:")
    for number, line in enumerate(plan(gpu_arch() or "native"), 1):
        print(f"{number:2}. {line}")
    ready = all(c.ok for c in checks if c.name not in OPTIONAL)
    print(f"\nready: {'yes' if ready else 'no'}")
    return 0 if ready else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="build bench/build/gpu-carry here")
    prepare.add_argument("--no-trl", action="store_true", help="carry no TRL wheels")
    runner = commands.add_parser("run", help="on the GPU machine")
    runner.add_argument("--out", type=Path, help="where gpu_check.json and logs go")
    runner.add_argument("--dry-run", action="store_true",
                        help="check preconditions and print the plan; run nothing")
    runner.add_argument("--budget", type=float, default=570,
                        help="seconds for everything (the device tool allows 600 a command)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        sizes = gpu_carry.prepare(trl=not args.no_trl)
        print(json.dumps(sizes))
        if sizes["total_bytes"] > gpu_carry.LIMIT_BYTES:
            print(f"too big for the device tool: {sizes['total_bytes']} > "
                  f"{gpu_carry.LIMIT_BYTES} bytes", file=sys.stderr)
            return 1
        return 0
    if args.dry_run:
        return dry_run(args.out)
    if args.out is None:
        parser.error("run needs --out (or --dry-run)")
    args.out.mkdir(parents=True, exist_ok=True)
    return run_all(args.out, args.budget)


if __name__ == "__main__":
    sys.exit(main())

"""Serving benchmark: deskai vs llama.cpp's C++ llama-server vs llama-cpp-python's server.

    python bench/run.py [--levels 1,4,16,32] [--prompt-tokens 64] [--output-tokens 128]
                        [--threads 2] [--rounds 3] [--out docs] [--baseline GIT_REF]

``--baseline`` adds "deskai (GIT_REF)": the same server from an earlier commit (a git worktree
under the cache, run with this venv), so a change is measured against its parent in one run.

Same GGUF (gemma3:270m), same thread count, same load generator (``deskai.benchmark``) for
every server; llama-bench and llama-batched-bench give the kernels' ceilings. The C++ tools are
built once from the llama.cpp sources inside llama-cpp-python's sdist, under
~/.cache/deskai-bench (outside the repository). Writes OUT/benchmarks.json, OUT/benchmarks.png
and prints the markdown tables that docs/benchmarks.md quotes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from inprocess import InProcessEngine

from deskai.benchmark.loadgen import (
    LevelResult,
    LoadSpec,
    make_prompt,
    one_request,
    run_benchmark,
    run_level,
)
from deskai.benchmark.report import plot
from deskai.engine.llamacpp.capacity import kv_bytes_per_slot
from deskai.store import Store, ensure_bundled_model

CACHE = Path(os.environ.get("DESKAI_BENCH_CACHE", "~/.cache/deskai-bench")).expanduser()
LLAMA_CPP_PYTHON = "0.3.36"
MODEL = "gemma3:270m"
CTX_PER_SLOT = 2048
TWO_GIB = 2 * 2**30
ENGINE = "deskai engine (in process)"


def tools() -> Path:
    """Build llama-server, llama-bench and llama-batched-bench once; return their bin dir."""
    bin_dir = CACHE / "build" / "bin"
    if all((bin_dir / name).exists() for name in ("llama-server", "llama-bench",
                                                  "llama-batched-bench")):
        return bin_dir
    sdist = CACHE / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(sdist)], check=True)
    subprocess.run(["tar", "xzf", str(next(sdist.glob("*.tar.gz"))), "-C", str(CACHE)],
                   check=True)
    source = CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    subprocess.run(["cmake", "-S", str(source), "-B", str(CACHE / "build"), "-DGGML_NATIVE=ON",
                    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF"], check=True)
    subprocess.run(["cmake", "--build", str(CACHE / "build"), "-j2", "--target", "llama-server",
                    "llama-bench", "llama-batched-bench"], check=True)
    return bin_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process, its log in a file, stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str]) -> None:
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{port}-", suffix=".log")[1])
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT,
                                            env={**os.environ, **env})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not come up")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def baseline_source(ref: str) -> Path:
    """``src/`` of a git worktree at ``ref``, made once under the cache."""
    repo = Path(__file__).resolve().parent.parent
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", ref],
                         capture_output=True, text=True, check=True).stdout.strip()
    tree = CACHE / f"baseline-{sha}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), sha],
                       check=True)
    return tree / "src"


def server_commands(gguf: Path, bin_dir: Path, threads: int, slots: int, home: Path,
                    baseline: str | None = None) -> dict[str, tuple[list[str], dict[str, str]]]:
    py = sys.executable
    deskai = [py, "-m", "deskai", "serve", "--threads", str(threads), "--context",
              str(CTX_PER_SLOT), "--parallel", str(slots), "--port", "{port}"]
    before = {} if baseline is None else {
        f"deskai ({baseline})": (deskai, {"DESKAI_HOME": str(home),
                                          "PYTHONPATH": str(baseline_source(baseline))})}
    return {
        "deskai": (deskai, {"DESKAI_HOME": str(home)}),
        **before,
        "llama-server (C++)": ([str(bin_dir / "llama-server"), "-m", str(gguf), "-t",
                                str(threads), "-tb", str(threads), "-np", str(slots), "-c",
                                str(CTX_PER_SLOT * slots), "--host", "127.0.0.1", "--port",
                                "{port}", "-a", MODEL], {}),
        "llama_cpp.server": ([py, "-m", "llama_cpp.server", "--model", str(gguf), "--n_threads",
                              str(threads), "--n_ctx", str(CTX_PER_SLOT), "--model_alias",
                              MODEL, "--port", "{port}"], {}),
    }


def prefix_ttft(url: str, prefix_tokens: int = 1000, rounds: int = 3) -> dict[str, float]:
    """TTFT of a request whose 1,000-token prefix is new (cold) vs already cached (warm)."""
    async def measure() -> dict[str, float]:
        cold, warm = [], []
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            for round_ in range(rounds):
                prefix = make_prompt(10_000 + round_, prefix_tokens)
                for store, question in ((cold, "Question one?"), (warm, "Question two?")):
                    spec = LoadSpec(url, MODEL, 0, 4)
                    timing = await one_request(client, spec, 0, f"{prefix} {question}")
                    store.append(timing.ttft)
        return {"cold_ttft_s": sorted(cold)[len(cold) // 2],
                "warm_ttft_s": sorted(warm)[len(warm) // 2]}
    return asyncio.run(measure())


def identical_rate(url: str, n: int = 16, tokens: int = 48) -> dict[str, float]:
    """How often a greedy output in a full batch equals the same prompt run alone."""
    prompts = [make_prompt(20_000 + i, 64) for i in range(n)]

    def body(prompt: str) -> dict[str, object]:
        return {"model": MODEL, "prompt": prompt, "max_tokens": tokens, "temperature": 0}

    with httpx.Client(base_url=url, timeout=600) as client:
        alone = [client.post("/v1/completions", json=body(p)).json()["choices"][0]["text"]
                 for p in prompts]

    async def together() -> list[str]:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            replies = await asyncio.gather(*(client.post("/v1/completions", json=body(p))
                                             for p in prompts))
        return [r.json()["choices"][0]["text"] for r in replies]

    batched = asyncio.run(together())
    same = sum(a == b for a, b in zip(alone, batched, strict=True))
    prefix_words = [len(os.path.commonprefix([a.split(), b.split()])) / max(len(a.split()), 1)
                    for a, b in zip(alone, batched, strict=True)]
    return {"identical": same, "of": n, "rate": same / n,
            "mean_shared_prefix": sum(prefix_words) / n}


def ceilings(bin_dir: Path, gguf: Path, threads: int, levels: list[int], prompt: int,
             output: int) -> dict[str, object]:
    bench = subprocess.run([str(bin_dir / "llama-bench"), "-m", str(gguf), "-t", str(threads),
                            "-p", str(prompt), "-n", str(output), "-o", "json"],
                           capture_output=True, text=True, check=True)
    rows = json.loads(bench.stdout)
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0)
    batched = subprocess.run([str(bin_dir / "llama-batched-bench"), "-m", str(gguf), "-t",
                              str(threads), "-c", str(CTX_PER_SLOT * max(levels)), "-b", "2048",
                              "-ub", "512", "-npp", str(prompt), "-ntg", str(output), "-npl",
                              ",".join(map(str, levels)), "--output-format", "jsonl"],
                             capture_output=True, text=True, check=True)
    per_level = {}
    for line in batched.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            per_level[int(row["pl"])] = {"tg_tok_s": row["speed_tg"], "pp_tok_s": row["speed_pp"],
                                         "all_tok_s": row["speed"],
                                         "out_tok_s_with_prefill":
                                             row["pl"] * row["tg"] / row["t"]}
    return {"llama_bench": {"tg_tok_s": tg, "pp_tok_s": pp}, "batched_bench": per_level}


def llama_server_kv_mib(log: Path) -> float:
    """Total KV cache MiB that llama-server reported allocating (base + SWA caches)."""
    sizes = re.findall(r"llama_kv_cache: size =\s*([\d.]+) MiB", log.read_text())
    return sum(float(s) for s in sizes)


def drive(running: dict[str, Server], engine: InProcessEngine | None, levels: list[int],
          args: argparse.Namespace, measure_ceilings: Callable[[], dict[str, Any]],
          results: dict[str, Any]) -> None:
    """Round by round, level by level, each server in turn (and the engine in process, and the
    ceilings once a round): what is compared is measured minutes apart, and the rounds' median
    keeps one slow minute on a shared machine from deciding a ratio."""
    servers: dict[str, dict[str, Any]] = results["servers"]
    for server in running.values():  # load the model before anything is timed
        run_benchmark(LoadSpec(server.url, MODEL, 8, 4), [], warmup=True)
    first_prompt = 0
    for round_ in range(args.rounds):
        if not args.no_ceilings:
            results["ceiling_rounds"].append(measure_ceilings())
        for level in levels:  # the same fresh prompts for everyone at this level and round
            for name, server in running.items():
                spec = LoadSpec(server.url, MODEL, args.prompt_tokens, args.output_tokens)
                record(servers[name], round_, asyncio.run(run_level(spec, level, max(level, 4),
                                                                    first_prompt)))
            if engine is not None:
                record(servers[ENGINE], round_, engine.run_level(
                    level, prompt_tokens=args.prompt_tokens, output_tokens=args.output_tokens,
                    first_prompt=first_prompt))
            first_prompt += max(level, 4)
            args.out.mkdir(parents=True, exist_ok=True)  # partial results survive a stop
            (args.out / "benchmarks.partial.json").write_text(json.dumps(results, indent=1))
    for name, server in running.items():
        entry = servers[name]
        if name != "llama_cpp.server":  # it has no prompt cache across requests
            entry["prefix_cache"] = prefix_ttft(server.url)
        if name == "deskai":
            entry["batched_vs_solo"] = identical_rate(server.url)
        if name.startswith("llama-server"):
            entry["kv_mib_total"] = llama_server_kv_mib(server.log)
    for entry in servers.values():
        entry["levels"] = median_levels(entry["rounds"])
    if results["ceiling_rounds"]:
        results["ceilings"] = median_ceilings(results["ceiling_rounds"])


def record(entry: dict[str, Any], round_: int, result: LevelResult) -> None:
    """Keep one level's result under its round, and print it (a long run shows progress)."""
    if len(entry["rounds"]) <= round_:
        entry["rounds"].append([])
    entry["rounds"][round_].append(result.to_dict())
    print(entry["name"], f"round {round_ + 1}", json.dumps(result.to_dict()), flush=True)


def median_levels(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per level, the round whose output tok/s is the median: one real run, not a blend."""
    by_level = zip(*rounds, strict=True)
    return [sorted(runs, key=lambda r: r["output_tok_s"])[len(runs) // 2] for runs in by_level]


def median_ceilings(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each ceiling figure's median over the rounds (the plot's dashed line)."""
    median = statistics.median
    batched = {level: {key: median(r["batched_bench"][level][key] for r in rounds)
                       for key in per_level}
               for level, per_level in rounds[0]["batched_bench"].items()}
    return {"llama_bench": {key: median(r["llama_bench"][key] for r in rounds)
                            for key in rounds[0]["llama_bench"]},
            "batched_bench": batched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,4,16,32")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3,
                        help="times every level is measured; tables show the median round")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--skip", default="",
                        help=f"servers to leave out, comma-separated ({ENGINE!r} too)")
    parser.add_argument("--baseline", default=None,
                        help="also run deskai as of this git ref (e.g. the parent commit)")
    parser.add_argument("--no-ceilings", action="store_true",
                        help="skip llama-bench and llama-batched-bench")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    bin_dir = tools()
    home = Path(tempfile.mkdtemp(prefix="deskai-bench-home-"))
    store = Store(home)
    ensure_bundled_model(store)
    gguf = store.resolve(MODEL)
    skip = set(filter(None, args.skip.split(",")))
    commands = {name: cmd for name, cmd in server_commands(
        gguf, bin_dir, args.threads, max(levels), home, args.baseline).items()
        if name not in skip}
    results: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "load_before": os.getloadavg()},
        "settings": {**vars(args), "out": str(args.out), "ctx_per_slot": CTX_PER_SLOT},
        "ceilings": {"llama_bench": {}, "batched_bench": {}}, "ceiling_rounds": [],
        "servers": {name: {"name": name, "command": " ".join(argv), "rounds": []}
                    for name, (argv, _env) in commands.items()},
    }
    engine = None
    if ENGINE not in skip:
        results["servers"][ENGINE] = {"name": ENGINE, "rounds": [], "command":
                                      f"LlamaCppEngine(threads={args.threads}, "
                                      f"parallel={max(levels)}) in bench/run.py's process"}
        engine = InProcessEngine(gguf, threads=args.threads, slots=max(levels),
                                 context_per_slot=CTX_PER_SLOT)
    running: dict[str, Server] = {}
    try:
        for name, (argv, env) in commands.items():  # all loaded up front, idle until driven
            port = free_port()
            running[name] = Server(name, [a.replace("{port}", str(port)) for a in argv], port,
                                   env)
        drive(running, engine, levels, args, functools.partial(
            ceilings, bin_dir, gguf, args.threads, levels, args.prompt_tokens,
            args.output_tokens), results)
    finally:
        for server in running.values():
            server.stop()
        if engine is not None:
            engine.close()
    per_slot = kv_bytes_per_slot(gguf, CTX_PER_SLOT)
    per_stream = kv_bytes_per_slot(gguf, CTX_PER_SLOT, unified=False)  # llama-server's -np
    results["kv"] = {"deskai_bytes_per_slot": per_slot,
                     "deskai_slots_in_2gib": TWO_GIB // per_slot,
                     "llama_server_bytes_per_slot": per_stream,
                     "llama_server_slots_in_2gib": TWO_GIB // per_stream,
                     "full_size_bytes_per_slot": kv_bytes_per_slot(gguf, CTX_PER_SLOT,
                                                                    swa_full=True)}
    results["machine"]["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=1))
    series = {name: [LevelResult(**r) for r in entry["levels"]]
              for name, entry in results["servers"].items()}
    tg = {level: v["out_tok_s_with_prefill"]
          for level, v in results["ceilings"]["batched_bench"].items()}
    plot(series, args.out / "benchmarks.png", ceilings={"llama-batched-bench": tg},
         title=f"{MODEL}, {args.threads} threads, {args.prompt_tokens} in / "
               f"{args.output_tokens} out, median of {args.rounds} rounds")
    print(f"wrote {args.out / 'benchmarks.json'} and {args.out / 'benchmarks.png'}")


if __name__ == "__main__":
    main()

"""Planner benchmarks: 1,000 fit queries, a 100,000-GPU plan search, predicted vs measured.

    python bench/bench_planner.py            # timings only (seconds)
    python bench/bench_planner.py --measure MODEL.gguf   # + llama.cpp measurements (minutes)

Results go into docs/planner.md by hand; tests never assert timings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from deskai.hardware import load_catalog
from deskai.planner import catalog_models, fit, load_model
from deskai.planner.memory import Runtime, memory_breakdown
from deskai.planner.roofline import speed
from deskai.planner.training import plan_train


def bench_fit(n: int = 1000) -> float:
    cat = load_catalog()
    systems = [cat.system(k) for k in ("dgx-spark", "h100", "rtx-4090", "m4-max", "dgx-h100")]
    models = list(catalog_models().values())
    contexts = (2048, 8192, 32768)
    queries = itertools.islice(itertools.cycle(itertools.product(models, systems, contexts)), n)
    start = time.perf_counter()
    for arch, system, context in queries:
        fit(arch, system, context=min(context, arch.context), quant="q4_k_m")
    return time.perf_counter() - start


def bench_plan() -> tuple[float, dict]:
    cat = load_catalog()
    start = time.perf_counter()
    plan = plan_train(load_model("llama3-405b"), cat.system("colossus"), tokens=15.6e12,
                      global_batch_tokens=64 * 2**20)
    return time.perf_counter() - start, plan.to_dict()


def measure(model_path: str) -> list[dict]:
    model = load_model(model_path)
    device = __import__("deskai.hardware", fromlist=["detect"]).detect().as_accelerator(threads=2)
    rows = []
    for n_ctx, swa_full, prompt in ((512, False, 64), (4096, False, 64), (4096, True, 64),
                                    (16384, False, 64), (16384, True, 64), (4096, False, 512)):
        out = subprocess.run([sys.executable, str(Path(__file__).with_name("measure_llamacpp.py")),
                              model_path, str(n_ctx), "1" if swa_full else "0", str(prompt)],
                             capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        runtime = Runtime(context=n_ctx, swa_full=swa_full, prompt_tokens=prompt)
        memory = memory_breakdown(model.architecture, runtime, model_file=model)
        predicted = speed(model.architecture, device, runtime, model_file=model, depth=prompt)
        rows.append({**got, "predicted_rss_bytes": round(memory.resident),
                     "predicted_decode": predicted.decode_tokens_per_s,
                     "predicted_prefill": predicted.prefill_tokens_per_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", metavar="GGUF")
    args = parser.parse_args()
    print(f"1,000 fit queries: {bench_fit():.3f} s")
    seconds, plan = bench_plan()
    print(f"plan train llama3-405b on colossus (100,000 H100): {seconds:.3f} s, "
          f"{plan['layouts_searched']} layouts; layout {plan['layout']}, mfu {plan['mfu']}")
    if args.measure:
        for row in measure(args.measure):
            print(json.dumps(row))


if __name__ == "__main__":
    main()

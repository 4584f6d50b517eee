"""Measure llama.cpp (through llama-cpp-python) in this process: peak RSS, prefill, decode.

Usage: python bench/measure_llamacpp.py MODEL.gguf N_CTX SWA_FULL(0|1) [PROMPT_TOKENS]
Prints one JSON line. Run it in a fresh process per configuration: peak RSS is per process.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM belongs to the address space exec created; ru_maxrss
    would not do: Linux carries it across fork + exec, so a big parent (pytest) leaks in."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    import llama_cpp

    path, n_ctx, swa_full = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    prompt_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    model = llama_cpp.Llama(path, n_ctx=n_ctx, n_threads=2, n_batch=512, swa_full=swa_full,
                            verbose=False)
    words = b"The Eiffel Tower is located in the city of Paris, which is the capital of France. "
    tokens = model.tokenize(words * 200)[:prompt_tokens]
    start = time.perf_counter()
    model.eval(tokens)
    prefill = len(tokens) / (time.perf_counter() - start)
    generated = 0
    start = time.perf_counter()
    for _ in model.generate(tokens, temp=0.0, reset=False):
        generated += 1
        if generated >= 48:
            break
    decode = generated / (time.perf_counter() - start)
    peak = peak_rss_bytes()
    print(json.dumps({"n_ctx": n_ctx, "swa_full": swa_full, "prompt_tokens": len(tokens),
                      "peak_rss_bytes": peak, "prefill_tokens_per_s": prefill,
                      "decode_tokens_per_s": decode}))


if __name__ == "__main__":
    main()

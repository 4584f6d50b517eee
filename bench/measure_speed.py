"""Measure llama.cpp's prefill and decode tok/s on this machine, for the planner's validation.

Usage: python bench/measure_speed.py MODEL.gguf N_CTX PROMPT_TOKENS BATCH [DECODE_TOKENS]

Batch 1 runs llama-cpp-python directly: prefill = PROMPT_TOKENS / time of one ``eval``
(best of two), decode = 1 / the median time of single-token ``eval`` calls at that depth
(llama.cpp's own step, no Python sampling). Batch > 1 runs deskai's engine with
``parallel=BATCH`` and BATCH concurrent greedy requests of PROMPT_TOKENS tokens each: decode
= tokens generated after every request's first token / the time they took. Two threads.
Prints one JSON line; run it in a fresh process (threads and memory are per process).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time

TEXT = b"The Eiffel Tower is located in the city of Paris, which is the capital of France. "


def batch_one(path: str, n_ctx: int, prompt_tokens: int, steps: int) -> dict:
    import llama_cpp

    model = llama_cpp.Llama(path, n_ctx=n_ctx, n_threads=2, n_batch=512, verbose=False)
    tokens = model.tokenize(TEXT * (prompt_tokens // 8 + 8))[:prompt_tokens]
    prefill = []
    for _ in range(2):
        model.reset()
        start = time.perf_counter()
        model.eval(tokens)
        prefill.append(time.perf_counter() - start)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        model.eval([tokens[i % len(tokens)]])
        times.append(time.perf_counter() - start)
    return {"prefill_tokens_per_s": len(tokens) / min(prefill),
            "decode_tokens_per_s": 1 / statistics.median(times),
            "decode_best_tokens_per_s": 1 / min(times), "prompt_tokens": len(tokens)}


def batched(path: str, n_ctx: int, prompt_tokens: int, batch: int, steps: int) -> dict:
    import llama_cpp

    from deskai.engine.llamacpp.engine import LlamaCppEngine
    from deskai.engine.protocol import EngineOptions, GenerationRequest, generate
    from deskai.engine.sampling import SamplingParams

    vocab = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    engine = LlamaCppEngine(path, EngineOptions(context_length=n_ctx, parallel=batch,
                                                threads=2, prefix_cache=False))
    firsts: list[float] = []
    ends: list[float] = []
    counts: list[int] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        text = (b"%d. " % index) + TEXT * (prompt_tokens // 8 + 8)
        tokens = vocab.tokenize(text)[:prompt_tokens]
        n = 0
        first = 0.0
        for delta in generate(engine, GenerationRequest(
                tokens, SamplingParams(max_tokens=steps, temperature=0))):
            n = delta.completion_tokens
            if not first:
                first = time.perf_counter()
        with lock:
            firsts.append(first)
            ends.append(time.perf_counter())
            counts.append(n)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(batch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.close()
    # tokens each request generated after the last request's first token, over that span
    span = min(ends) - max(firsts)
    longest = max(e - f for e, f in zip(ends, firsts, strict=True))
    after = sum(n - 1 for n in counts) * span / longest
    return {"decode_tokens_per_s": after / span if span > 0 else 0.0,
            "generated": counts, "prompt_tokens": prompt_tokens}


def main() -> None:
    path, n_ctx, prompt, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 24
    result = (batch_one(path, n_ctx, prompt, steps) if batch == 1
              else batched(path, n_ctx, prompt, batch, steps))
    result.update({"n_ctx": n_ctx, "batch": batch, "load_average": os.getloadavg()[0]})
    print(json.dumps(result))


if __name__ == "__main__":
    main()

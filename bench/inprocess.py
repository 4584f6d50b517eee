"""deskai's engine driven in process, with no HTTP server or client around it.

The load generator's closed loop (``level`` requests in flight, ``max(level, 4)`` in all,
fresh word-salad prompts, greedy), but each request is ``LlamaCppEngine.generate`` on its own
thread. What it measures is the engine — scheduling, batching, sampling, detokenizing —
against llama-bench and llama-batched-bench, which are the kernels with no server either; the
gap between this row and deskai over HTTP is what serving costs on the same cores.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deskai.benchmark.loadgen import LevelResult, RequestTiming, make_prompt, summarize
from deskai.engine.llamacpp.engine import LlamaCppEngine
from deskai.engine.protocol import EngineOptions, GenerationRequest, generate
from deskai.engine.sampling import SamplingParams


class InProcessEngine:
    """One engine, loaded once, measured level by level like a server."""

    def __init__(self, gguf: Path, *, threads: int, slots: int, context_per_slot: int) -> None:
        self.engine = LlamaCppEngine(gguf, EngineOptions(
            context_length=context_per_slot, parallel=slots, threads=threads,
            max_queue=4 * slots))

    def run_level(self, concurrency: int, *, prompt_tokens: int, output_tokens: int,
                  first_prompt: int) -> LevelResult:
        count = max(concurrency, 4)
        params = SamplingParams(max_tokens=output_tokens, temperature=0.0)

        def one(index: int) -> RequestTiming:
            start = time.perf_counter()
            arrivals = []
            request = GenerationRequest(make_prompt(index, prompt_tokens), params)
            for delta in generate(self.engine, request):
                if delta.text:  # what the load generator counts: chunks that carry text
                    arrivals.append(time.perf_counter())
            return RequestTiming.from_arrivals(start, arrivals, time.perf_counter(),
                                               delta.completion_tokens)

        with ThreadPoolExecutor(concurrency) as pool:
            start = time.perf_counter()
            timings = list(pool.map(one, range(first_prompt, first_prompt + count)))
            duration = time.perf_counter() - start
        return summarize(concurrency, timings, [], duration)

    def close(self) -> None:
        self.engine.close()

"""A load generator for any OpenAI-compatible server: ``deskai bench`` and ``bench/run.py``.

For each concurrency level it keeps that many streamed ``/v1/completions`` requests in
flight and measures what a user sees: time to first token (TTFT), the gaps between tokens
(ITL), and, over the whole level, output tokens and requests per second. Prompts are distinct
word salads of about the asked length, so no server gets a prefix-cache advantage.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field

import httpx

from deskai.errors import DeskaiError

_WORDS = (
    "time", "person", "year", "way", "day", "thing", "man", "world", "life", "hand", "part",
    "child", "eye", "woman", "place", "work", "week", "case", "point", "government",
    "company", "number", "group", "problem", "fact", "river", "garden", "music", "window",
    "market", "station", "letter", "mountain", "island", "engine", "forest", "paper",
    "light", "voice",
)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str
    model: str
    prompt_tokens: int = 64
    output_tokens: int = 128
    api_key: str | None = None
    timeout: float = 600.0


@dataclass(slots=True)
class RequestTiming:
    ttft: float
    itls: list[float]
    output_tokens: int
    latency: float

    @classmethod
    def from_arrivals(cls, start: float, arrivals: list[float], end: float,
                      output_tokens: int) -> RequestTiming:
        """One request's timing from when it was sent, when each piece of text arrived, and
        when it ended."""
        if not arrivals:
            raise DeskaiError("the server streamed no text")
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        return cls(arrivals[0] - start, gaps, output_tokens, end - start)


@dataclass(slots=True)
class LevelResult:
    """What one concurrency level measured; times in seconds."""

    concurrency: int
    requests: int
    duration: float
    output_tokens: int
    ttft_p50: float
    ttft_p95: float
    itl_mean: float
    itl_p95: float
    output_tok_s: float
    requests_s: float
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    # CPU seconds the load generator itself used: on the server's machine, taken from it
    client_cpu_s: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def make_prompt(index: int, n_tokens: int) -> str:
    """About ``n_tokens`` tokens of shuffled common words, different for every ``index``."""
    rng = random.Random(index)
    return " ".join(rng.choice(_WORDS) for _ in range(max(1, n_tokens - 1)))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


async def one_request(client: httpx.AsyncClient, spec: LoadSpec, index: int,
                      prompt: str | None = None) -> RequestTiming:
    """Stream one completion; ``prompt`` defaults to the ``index``-th generated one."""
    text = prompt if prompt is not None else make_prompt(index, spec.prompt_tokens)
    body = {"model": spec.model, "prompt": text,
            "max_tokens": spec.output_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    for attempt in range(3):
        try:
            return await _stream_once(client, body)
        except httpx.RemoteProtocolError:
            # a keep-alive connection the server closed while idle; open a new one
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _stream_once(client: httpx.AsyncClient, body: dict[str, object]) -> RequestTiming:
    start = time.perf_counter()
    arrivals: list[float] = []
    usage_tokens: int | None = None
    async with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise DeskaiError(f"HTTP {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                usage_tokens = chunk["usage"].get("completion_tokens")
            choices = chunk.get("choices") or []
            if choices and choices[0].get("text"):
                arrivals.append(time.perf_counter())
    return RequestTiming.from_arrivals(start, arrivals, time.perf_counter(),
                                       usage_tokens or len(arrivals))


async def run_level(spec: LoadSpec, concurrency: int, requests: int,
                    first_prompt: int = 0) -> LevelResult:
    """Send ``requests`` requests, ``concurrency`` at a time, and summarize them; their prompts
    are the generated ones from index ``first_prompt`` on."""
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    limits = httpx.Limits(max_connections=concurrency + 4)
    counter = iter(range(first_prompt, first_prompt + requests))
    timings: list[RequestTiming] = []
    errors: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for index in counter:
            try:
                timings.append(await one_request(client, spec, index))
            except (httpx.HTTPError, DeskaiError, ValueError) as exc:
                errors.append(str(exc) or type(exc).__name__)

    async with httpx.AsyncClient(base_url=spec.url.rstrip("/"), headers=headers, limits=limits,
                                 timeout=spec.timeout) as client:
        start, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        duration = time.perf_counter() - start
        client_cpu = time.process_time() - cpu_start
    return summarize(concurrency, timings, errors, duration, client_cpu_s=client_cpu)


def summarize(concurrency: int, timings: list[RequestTiming], errors: list[str],
              duration: float, client_cpu_s: float | None = None) -> LevelResult:
    ttfts = [t.ttft for t in timings]
    itls = [gap for t in timings for gap in t.itls]
    tokens = sum(t.output_tokens for t in timings)
    return LevelResult(
        concurrency=concurrency, requests=len(timings), duration=duration,
        output_tokens=tokens,
        ttft_p50=percentile(ttfts, 50), ttft_p95=percentile(ttfts, 95),
        itl_mean=statistics.fmean(itls) if itls else float("nan"),
        itl_p95=percentile(itls, 95),
        output_tok_s=tokens / duration if duration > 0 else 0.0,
        requests_s=len(timings) / duration if duration > 0 else 0.0,
        failures=len(errors), errors=errors[:3], client_cpu_s=client_cpu_s)


def run_benchmark(spec: LoadSpec, levels: list[int], requests_per_level: int | None = None,
                  warmup: bool = True) -> list[LevelResult]:
    """Run every concurrency level in turn (after one warm-up request that loads the model)."""
    async def main() -> list[LevelResult]:
        if warmup:
            await run_level(LoadSpec(spec.url, spec.model, 8, 4, spec.api_key), 1, 1)
        results = []
        first_prompt = 0
        for level in levels:  # new prompts at every level: no server gets a cached head start
            count = requests_per_level or max(level, 4)
            results.append(await run_level(spec, level, count, first_prompt))
            first_prompt += count
        return results

    return asyncio.run(main())

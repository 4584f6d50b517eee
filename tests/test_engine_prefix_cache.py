"""The prefix cache's bookkeeping: which slot a prompt gets and how much of it is reused."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import stream

from deskai.benchmark.loadgen import make_prompt
from deskai.engine.llamacpp.capacity import default_parallel, kv_bytes_per_slot
from deskai.engine.llamacpp.engine import LlamaCppEngine
from deskai.engine.llamacpp.prefix_cache import MIN_REUSED_TOKENS, SlotTable, common_prefix
from deskai.engine.protocol import EngineOptions
from deskai.engine.sampling import SamplingParams

SHARED = list(range(100, 100 + MIN_REUSED_TOKENS + 4))  # a prefix long enough to reuse


def test_common_prefix() -> None:
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2, 3], [1, 2, 3]) == 3
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([2], [1]) == 0
    long = list(range(1000))
    assert common_prefix(long, long[:700] + [-1] + long[701:]) == 700


def test_prompt_goes_to_the_slot_holding_its_longest_prefix() -> None:
    table = SlotTable(3)
    for _ in range(3):
        table.acquire([])  # take all three
    table.release(0, [*SHARED, 4])
    table.release(1, [*SHARED[:10], 9])
    table.release(2, [7, 7])
    choice = table.acquire([*SHARED, 5, 6])
    assert (choice.slot, choice.cached) == (0, len(SHARED))


def test_a_match_too_short_to_be_worth_a_slot_is_ignored() -> None:
    table = SlotTable(2)
    table.acquire([])
    table.acquire([])
    table.release(1, [0, 0])
    table.release(0, [1, 2, 3])  # the most recent, and sharing [1, 2] with the prompt
    choice = table.acquire([1, 2, 9])
    assert (choice.slot, choice.cached) == (1, 0)


def test_last_prompt_token_is_never_cached() -> None:
    table = SlotTable(1)
    table.acquire([])
    table.release(0, SHARED)
    # its logits pick the first output token
    assert table.acquire(SHARED).cached == len(SHARED) - 1


def test_a_prefix_counts_only_for_the_adapter_that_computed_it() -> None:
    table = SlotTable(1)
    table.acquire([])
    table.release(0, [*SHARED, 4], adapter="sha256-a")
    assert table.acquire([*SHARED, 5], adapter="sha256-b").cached == 0
    table.release(0, [*SHARED, 4], adapter="sha256-a")
    assert table.acquire([*SHARED, 5]).cached == 0  # the bare base model differs too
    table.release(0, [*SHARED, 4], adapter="sha256-a")
    assert table.acquire([*SHARED, 5], adapter="sha256-a").cached == len(SHARED)


def test_without_a_match_the_least_recently_used_slot_is_taken() -> None:
    table = SlotTable(2)
    table.acquire([])
    table.acquire([])
    table.release(1, [5])
    table.release(0, [6])
    assert table.acquire([9]).slot == 1


def test_cached_prefixes_beyond_the_budget_are_evicted_oldest_first() -> None:
    table = SlotTable(3)
    for _ in range(3):
        table.acquire([])
    table.release(0, [1] * 50)
    table.release(1, [2] * 30)
    table.release(2, [3] * 40)
    assert table.evict(100) == [0]  # 120 held: the oldest goes
    assert table.acquire([1] * 10).cached == 0
    assert table.evict(100) == []


def test_disabled_cache_reuses_nothing() -> None:
    table = SlotTable(1, enabled=False)
    table.acquire([])
    table.release(0, [1, 2, 3])
    assert table.acquire([1, 2, 3, 4]).cached == 0


def cached_tokens(engine: LlamaCppEngine, prompt: str) -> int:
    """Prompt tokens a short greedy run of ``prompt`` took from the prefix cache."""
    params = SamplingParams(max_tokens=8, temperature=0.0)
    return list(stream(engine, prompt, params))[-1].cached_tokens


def test_the_engine_drops_the_oldest_cached_prefix_beyond_one_slots_context(
        real_gguf: Path) -> None:
    """Two finished 150-token prompts leave more than a 256-token slot's worth cached in the
    free slots: the engine clears the older one, and only the newer is still a cache hit."""
    engine = LlamaCppEngine(real_gguf, EngineOptions(context_length=256, parallel=2, threads=2))
    older, newer = make_prompt(1, 150), make_prompt(2, 150)

    try:
        assert cached_tokens(engine, older) == cached_tokens(engine, newer) == 0
        newer_again = cached_tokens(engine, newer)
        older_again = cached_tokens(engine, older)
    finally:
        engine.close()
    assert newer_again > 100
    assert older_again == 0


def test_windowed_layers_make_slots_smaller(real_gguf: Path) -> None:
    # Gemma 3 270M: 18 layers, one 256-dim KV head, 15 of them windowed to 512 tokens; the
    # sizes llama.cpp logs for 32 slots of 2,048 tokens: 65,536 full cells × 3 layers and
    # 16,896 windowed cells × 15 layers (unified), or 2,048 and 1,024 per slot (per stream)
    full = kv_bytes_per_slot(real_gguf, 2048, swa_full=True)
    unified = kv_bytes_per_slot(real_gguf, 2048)
    per_stream = kv_bytes_per_slot(real_gguf, 2048, unified=False)
    assert full == 18 * 2048 * 1024
    assert unified * 32 == (3 * 65536 + 15 * 16896) * 1024
    assert per_stream == (3 * 2048 + 15 * 1024) * 1024
    assert full > per_stream > unified


def test_default_parallel_is_bounded_by_memory_and_cores() -> None:
    per_slot = 27 * 2**20
    assert default_parallel(per_slot, 2**40, cores=2) == 16
    assert default_parallel(per_slot, 4 * per_slot, cores=2) == 1
    assert default_parallel(per_slot, 0, cores=2) == 1


def test_a_cache_spread_by_many_requests_drops_its_prefixes_when_idle(real_gguf: Path) -> None:
    """Attention scans up to the highest KV cell in use, so prefixes cached while many requests
    ran (cells far up the buffer) are dropped once the engine goes idle; a lightly used cache
    (one request at a time, as in a chat) keeps them."""
    engine = LlamaCppEngine(real_gguf, EngineOptions(context_length=256, parallel=4, threads=2))
    prompts = [make_prompt(10 + i, 150) for i in range(4)]

    def idle_with(cached: Callable[[int], bool]) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not engine.stats().busy and cached(engine.scheduler.slots.cached_tokens):
                return True
            time.sleep(0.05)
        return False

    try:
        with ThreadPoolExecutor(4) as pool:  # 4 x ~158 tokens in use: twice a slot's context
            assert list(pool.map(lambda p: cached_tokens(engine, p), prompts)) == [0] * 4
        assert idle_with(lambda held: held == 0)
        assert cached_tokens(engine, prompts[0]) == 0
        time.sleep(0.5)  # idle again, after one request alone: its prefix stays
        assert idle_with(lambda held: held > 100)
        assert cached_tokens(engine, prompts[0]) > 100
    finally:
        engine.close()

"""Many clients at once against a real ``deskai serve``: batching, cancellation, backpressure,
the prefix cache — through the official ``openai`` client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from conftest import (
    PROMPTS,
    REAL_MODEL,
    SYSTEM,
    ServerProcess,
    running_gauges_during_streams,
)

from deskai.engine.types import Delta
from deskai.server.generation import mailbox_of


def client_for(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def one_slot_server(shared_home: Path) -> Iterator[ServerProcess]:
    """A server with one slot and no queue: a second request is refused while one runs."""
    proc = ServerProcess(shared_home, "--parallel", "1", "--max-queue", "0")
    yield proc
    proc.stop()


def complete(client: openai.OpenAI, prompt: str, max_tokens: int = 10) -> str:
    result = client.completions.create(model=REAL_MODEL, prompt=prompt, max_tokens=max_tokens,
                                       temperature=0)
    return result.choices[0].text


def stream(client: openai.OpenAI, prompt: str, max_tokens: int = 10) -> str:
    chunks = client.completions.create(model=REAL_MODEL, prompt=prompt, max_tokens=max_tokens,
                                       temperature=0, stream=True)
    return "".join(chunk.choices[0].text for chunk in chunks)


def test_concurrent_streams_each_continue_their_own_prompt(server: ServerProcess) -> None:
    client = client_for(server)
    alone = [complete(client, prompt) for prompt in PROMPTS]
    assert alone[0].startswith(" 6, 7, 8") and "Paris" in alone[1]
    with ThreadPoolExecutor(len(PROMPTS) * 2) as pool:
        together = list(pool.map(lambda p: stream(client, p), PROMPTS * 2))
    # Batched float sums may round differently from a solo pass and flip a late near-tie
    # (`--batch-invariant` exists for byte-identity); a mix-up of streams shows at once.
    for batched, solo in zip(together, alone * 2, strict=True):
        assert batched[:8] == solo[:8], (batched, solo)


def test_repeated_system_prompt_hits_the_prefix_cache(server: ServerProcess) -> None:
    client = client_for(server)
    first = client.completions.create(model=REAL_MODEL, prompt=SYSTEM + "Question: hi?",
                                      max_tokens=4, temperature=0)
    second = client.completions.create(model=REAL_MODEL, prompt=SYSTEM + "Question: bye?",
                                       max_tokens=4, temperature=0)
    assert first.usage is not None and second.usage is not None
    details = second.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens is not None
    evaluated = second.usage.prompt_tokens - details.cached_tokens
    assert details.cached_tokens > 100, "the shared system prompt was not recomputed"
    assert 0 < evaluated < 10, "only the new question was evaluated"


def test_full_queue_returns_503_with_retry_after(one_slot_server: ServerProcess) -> None:
    client = client_for(one_slot_server)
    with client.completions.with_streaming_response.create(
            model=REAL_MODEL, prompt=PROMPTS[0], max_tokens=400, temperature=0,
            stream=True) as busy:
        lines = busy.iter_lines()  # held: a dropped iterator would close the response
        next(lines)  # the one slot is now taken
        refused = httpx.post(f"{one_slot_server.url}/v1/completions", timeout=30,
                             json={"model": REAL_MODEL, "prompt": "hi", "max_tokens": 2})
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        error = refused.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "queue_full"
        with pytest.raises(openai.APIStatusError) as raised:
            complete(client, "hi", 2)
        assert raised.value.status_code == 503


def test_disconnect_frees_the_slot(one_slot_server: ServerProcess) -> None:
    client = client_for(one_slot_server)
    assert _eventually_served(client)  # the previous test's stream may still be winding down
    # 2,000 tokens would hold the only slot for half a minute or more if nobody noticed the
    # client leaving; the next request only needs the slot to be freed.
    with client.completions.with_streaming_response.create(
            model=REAL_MODEL, prompt=PROMPTS[0], max_tokens=2000, temperature=0,
            stream=True) as leaving:
        lines = leaving.iter_lines()
        for _ in range(3):
            next(lines)
    assert _eventually_served(client), "the slot was not freed after the client disconnected"


def test_disconnect_of_a_non_streamed_request_frees_the_slot(
        one_slot_server: ServerProcess) -> None:
    client = client_for(one_slot_server)
    assert _eventually_served(client)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{one_slot_server.url}/v1/completions", timeout=1.5,
                   json={"model": REAL_MODEL, "prompt": PROMPTS[0], "max_tokens": 2000,
                         "temperature": 0})
    assert _eventually_served(client)


def _eventually_served(client: openai.OpenAI, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            return complete(client, PROMPTS[0], 3).startswith(" 6")
        except openai.APIStatusError as exc:
            assert exc.status_code == 503
            time.sleep(0.2)
    return False


def test_request_timeout_is_a_504(shared_home: Path) -> None:
    proc = ServerProcess(shared_home, "--parallel", "1", "--timeout", "0.5")
    try:
        response = httpx.post(f"{proc.url}/v1/completions", timeout=60,
                              json={"model": REAL_MODEL, "prompt": PROMPTS[0],
                                    "max_tokens": 1500, "temperature": 0})
    finally:
        proc.stop()
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "request_timeout"


def test_deltas_posted_from_another_thread_arrive_in_order_on_each_stream() -> None:
    """The engine thread posts deltas of many streams through one mailbox (one wake-up of the
    event loop per batch); every stream still gets all of its own, in order."""
    async def main() -> list[list[str]]:
        mailbox = mailbox_of(asyncio.get_running_loop())
        queues: list[asyncio.Queue[Delta]] = [asyncio.Queue() for _ in range(3)]

        def engine_thread() -> None:
            for step in range(200):
                for index, queue in enumerate(queues):
                    mailbox.post(queue, Delta(f"{index}:{step}", (), None, 0, step))

        await asyncio.to_thread(engine_thread)
        return [[(await queue.get()).text for _ in range(200)] for queue in queues]

    received = asyncio.run(main())
    assert received == [[f"{index}:{step}" for step in range(200)] for index in range(3)]


def test_metrics_scraped_while_16_streams_run(server: ServerProcess) -> None:
    """/metrics reads each engine's stats snapshot (taken under its lock) while the step loop
    mutates its queues: every scrape answers, and sees the streams."""
    bodies = [{"model": REAL_MODEL, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 24,
               "temperature": 0} for i in range(16)]
    running = running_gauges_during_streams(server.url, bodies)
    assert len(running) > 3 and max(running) > 0


def test_a_model_too_big_for_memory_is_refused_and_the_rest_keeps_serving(
        home_with_real_model: Path) -> None:
    from test_runtime_manager import write_huge_claim_gguf

    from deskai.store import Store

    Store(home_with_real_model).import_gguf(
        write_huge_claim_gguf(home_with_real_model.parent / "huge.gguf"), "huge")
    proc = ServerProcess(home_with_real_model, "--parallel", "1")
    try:
        client = client_for(proc)
        with pytest.raises(openai.APIStatusError) as refused:
            client.completions.create(model="huge", prompt="hi", max_tokens=2)
        assert refused.value.status_code == 507
        error = refused.value.body
        assert error["code"] == "insufficient_memory" and error["param"] == "model"  # type: ignore[index]
        assert "huge:latest needs" in error["message"] and "is free" in error["message"]  # type: ignore[index]
        ollama_reply = httpx.post(f"{proc.url}/api/generate",
                                  json={"model": "huge", "prompt": "hi", "stream": False})
        assert ollama_reply.status_code == 507 and "is free" in ollama_reply.json()["error"]
        assert complete(client, PROMPTS[1], 4).startswith(" Paris")
        assert "huge" not in str(httpx.get(f"{proc.url}/api/ps").json())
    finally:
        proc.stop()

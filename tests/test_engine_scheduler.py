"""The scheduler's token budget, chunked prefill and backpressure — pure bookkeeping, no model."""

from __future__ import annotations

import pytest

from deskai.engine.llamacpp.request import Request
from deskai.engine.llamacpp.scheduler import Scheduler
from deskai.engine.sampling import SamplingParams
from deskai.errors import OverloadedError


def request(prompt_tokens: int, name: str = "r") -> Request:
    return Request(request_id=name, prompt_tokens=list(range(1, prompt_tokens + 1)),
                   params=SamplingParams(), sink=lambda delta: None, max_total_tokens=4096)


def step(scheduler: Scheduler) -> list[tuple[str, int, bool]]:
    """Plan a step and pretend the model ran it: (request, tokens fed, samples after)."""
    plan, _ = scheduler.schedule()
    for scheduled in plan:
        req, entry = scheduled.request, scheduled.entry
        if req.is_prefilled:
            req.num_fed_outputs += 1
        else:
            req.num_computed += len(entry.tokens)
        if entry.wants_logits:
            req.output_tokens.append(7)
            req.pending_token = 7
    return [(s.request.request_id, len(s.entry.tokens), s.entry.wants_logits) for s in plan]


def test_a_long_prompt_is_prefilled_in_chunks_of_the_budget() -> None:
    scheduler = Scheduler(num_slots=2, max_batch_tokens=16, max_queue=4)
    scheduler.enqueue(request(40, "long"))
    assert step(scheduler) == [("long", 16, False)]
    assert step(scheduler) == [("long", 16, False)]
    assert step(scheduler) == [("long", 8, True)]  # the last chunk samples the first token
    assert step(scheduler) == [("long", 1, True)]  # then one token per step


def test_decodes_go_first_and_prompts_share_what_is_left() -> None:
    scheduler = Scheduler(num_slots=3, max_batch_tokens=16, max_queue=4)
    scheduler.enqueue(request(4, "a"))
    scheduler.enqueue(request(4, "b"))
    assert step(scheduler) == [("a", 4, True), ("b", 4, True)]
    scheduler.enqueue(request(30, "c"))
    # a and b decode one token each; c's prompt gets the remaining 14 of 16
    assert step(scheduler) == [("a", 1, True), ("b", 1, True), ("c", 14, False)]
    assert sum(tokens for _, tokens, _ in step(scheduler)) <= 16


def test_a_full_queue_is_refused_with_retry_after() -> None:
    scheduler = Scheduler(num_slots=1, max_batch_tokens=16, max_queue=1)
    scheduler.enqueue(request(4, "running"))
    step(scheduler)
    scheduler.enqueue(request(4, "queued"))
    with pytest.raises(OverloadedError) as refused:
        scheduler.enqueue(request(4, "refused"))
    assert refused.value.retry_after >= 1 and "1 slots are in use" in refused.value.message


def test_release_frees_the_slot_for_the_next_waiting_request() -> None:
    scheduler = Scheduler(num_slots=1, max_batch_tokens=16, max_queue=2)
    first, second = request(4, "first"), request(4, "second")
    scheduler.enqueue(first)
    scheduler.enqueue(second)
    assert step(scheduler) == [("first", 4, True)]
    scheduler.release(first)
    assert step(scheduler) == [("second", 4, True)]

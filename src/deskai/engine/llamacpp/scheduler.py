"""Which tokens of which requests go into the next ``llama_decode``.

Continuous batching in the shape of nano-vllm's scheduler: a ``waiting`` queue and the
``running`` requests that hold a sequence slot. Every step first gives each decoding request
its one token, then spends what is left of the token budget on prompt chunks, so a long prompt
is prefilled a chunk at a time between decode steps instead of stalling everyone.

Admission goes through the ``SlotTable`` (``prefix_cache``): a new request takes the free slot
that already holds the longest prefix of its prompt, and only the rest is prefilled. ``reuse``
(the runner, in the engine) trims the slot and says how much of that prefix really survived.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from deskai.engine.llamacpp.prefix_cache import SlotTable
from deskai.engine.llamacpp.request import Request, RequestStatus
from deskai.errors import OverloadedError


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """Tokens of one sequence to feed in this step, starting at ``start_pos``."""

    seq_id: int
    tokens: list[int]
    start_pos: int
    wants_logits: bool  # sample after the last token of this entry


@dataclass(frozen=True, slots=True)
class ScheduledEntry:
    request: Request
    entry: BatchEntry


ReuseFn = Callable[[int, int], int]
"""``reuse(slot, cached)``: trim ``slot`` to its first ``cached`` tokens; return how many
it kept."""


class Scheduler:
    """Admits requests into ``num_slots`` slots and plans each step within ``max_batch_tokens``."""

    def __init__(self, num_slots: int, max_batch_tokens: int, max_queue: int, *,
                 reuse: ReuseFn | None = None, prefix_cache: bool = True,
                 batch_invariant: bool = False, cached_tokens_budget: int = 4096) -> None:
        self.num_slots = num_slots
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.slots = SlotTable(num_slots, enabled=prefix_cache,
                               cached_tokens_budget=cached_tokens_budget)
        self._reuse: ReuseFn = reuse or (lambda slot, cached: cached)
        # KV cells are allocated first-fit in one buffer, and attention scans up to the highest
        # cell in use: a prefix cached while many requests ran may sit far up and make every
        # later step scan the empty cells below it. Past this many tokens in use at once, the
        # cache counts as spread, and its cached prefixes are dropped when the engine goes idle.
        self._spread_above = 2 * cached_tokens_budget
        self._peak_tokens_in_use = 0
        # every prompt chunk starts at a multiple of ``max_batch_tokens``, as when run alone,
        # and the engine decodes each entry on its own: batched output equals solo output
        self.batch_invariant = batch_invariant

    # -- capacity -------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Requests that will have to wait for a slot (waiting ones beyond the free slots)."""
        return max(0, len(self.waiting) - self.slots.num_free)

    def can_enqueue(self) -> bool:
        return len(self.waiting) < self.slots.num_free + self.max_queue

    def enqueue(self, request: Request) -> None:
        if not self.can_enqueue():
            raise OverloadedError(
                f"server busy: all {self.num_slots} slots are in use and {self.queued} "
                f"requests are queued; retry shortly", retry_after=1)
        self.waiting.append(request)

    def can_admit(self) -> bool:
        return bool(self.waiting) and self.slots.can_acquire()

    def admit(self) -> Request:
        """Give the oldest waiting request a slot, reusing what that slot already holds."""
        request = self.waiting.popleft()
        choice = self.slots.acquire(request.prompt_tokens, request.adapter)
        kept = self._reuse(choice.slot, choice.cached)
        self.slots.trimmed(choice.slot, kept)
        request.slot = choice.slot
        request.num_computed = request.num_cached = kept
        request.status = RequestStatus.RUNNING
        self.running.append(request)
        return request

    def release(self, request: Request, *, keep_cache: bool = True) -> list[int]:
        """Take a finished or cancelled request out, giving its slot back.

        The slot keeps the request's tokens for the next prompt that starts the same way, unless
        ``keep_cache`` is false (after a failed decode its contents are unknown). Returns the
        slots whose cells the caller should clear: this one if it keeps nothing, and the least
        recently used cached prefixes beyond the slot table's budget.
        """
        if request in self.running:
            # tokens in use grow as requests decode and peak just before one leaves: noted
            # here, not summed in every step
            self._note_tokens_in_use()
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        stale: list[int] = []
        if request.slot is not None and request.status is RequestStatus.RUNNING:
            stale = self.slots.release(request.slot, request.kv_tokens if keep_cache else [],
                                       request.adapter)
        request.status = RequestStatus.FINISHED
        return stale

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_free_slots(self) -> int:
        return self.slots.num_free

    # -- planning -------------------------------------------------------------------------------

    def schedule(self) -> tuple[list[ScheduledEntry], list[Request]]:
        """Plan one step; return the batch and the requests newly given a slot."""
        # entries are decoded one by one in batch-invariant mode: no budget is shared
        budget = self.max_batch_tokens * (self.num_slots if self.batch_invariant else 1)
        plan: list[ScheduledEntry] = []
        for request in self.running:
            if request.is_prefilled and request.pending_token is not None and budget > 0:
                plan.append(ScheduledEntry(request, BatchEntry(
                    request.slot or 0, [request.pending_token], request.position, True)))
                budget -= 1
        for request in self.running:
            if budget <= 0:
                break
            if not request.is_prefilled:
                budget -= self._plan_prefill(request, budget, plan)
        admitted: list[Request] = []
        while budget > 0 and self.can_admit():
            request = self.admit()
            admitted.append(request)
            budget -= self._plan_prefill(request, budget, plan)
        return plan, admitted

    def compact_when_idle(self) -> list[int]:
        """With nothing running: if the cache was spread since the last call, forget every
        cached prefix so that the next requests' cells start at the bottom of the buffer;
        return the slots to clear. A lightly used cache (one chat, a few users) keeps them."""
        spread = self._peak_tokens_in_use > self._spread_above
        self._peak_tokens_in_use = self.slots.cached_tokens
        return self.slots.evict(0) if spread else []

    def _note_tokens_in_use(self) -> None:
        in_use = sum(request.position for request in self.running) + self.slots.cached_tokens
        self._peak_tokens_in_use = max(self._peak_tokens_in_use, in_use)

    def _plan_prefill(self, request: Request, budget: int, plan: list[ScheduledEntry]) -> int:
        size = min(request.remaining_prompt, budget)
        start = request.num_computed
        if self.batch_invariant:
            size = min(size, self.max_batch_tokens - start % self.max_batch_tokens)
        chunk = request.prompt_tokens[start:start + size]
        completes = start + size >= request.num_prompt_tokens
        plan.append(ScheduledEntry(request, BatchEntry(request.slot or 0, chunk, start,
                                                       completes)))
        return size

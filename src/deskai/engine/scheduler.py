"""Which tokens of which requests go into the next ``llama_decode``.

Continuous batching in the shape of nano-vllm's scheduler: a ``waiting`` queue and the
``running`` requests that hold a sequence slot. Every step first gives each decoding request
its one token, then spends what is left of the token budget on prompt chunks, so a long prompt
is prefilled a chunk at a time between decode steps instead of stalling everyone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from deskai.engine.llamacpp import BatchEntry
from deskai.engine.request import Request, RequestStatus
from deskai.errors import OverloadedError


@dataclass(frozen=True, slots=True)
class ScheduledEntry:
    request: Request
    entry: BatchEntry


class Scheduler:
    """Admits requests into ``num_slots`` slots and plans each step within ``max_batch_tokens``."""

    def __init__(self, num_slots: int, max_batch_tokens: int, max_queue: int) -> None:
        self.num_slots = num_slots
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._free_slots: list[int] = list(range(num_slots - 1, -1, -1))

    # -- capacity -------------------------------------------------------------------------------

    def can_enqueue(self) -> bool:
        return len(self.waiting) < self.max_queue

    def enqueue(self, request: Request) -> None:
        if not self.can_enqueue():
            raise OverloadedError(
                f"server busy: {len(self.waiting)} requests already queued; retry shortly",
                retry_after=1)
        self.waiting.append(request)

    def can_admit(self) -> bool:
        return bool(self.waiting) and bool(self._free_slots)

    def admit(self) -> Request:
        request = self.waiting.popleft()
        request.slot = self._free_slots.pop()
        request.status = RequestStatus.RUNNING
        self.running.append(request)
        return request

    def release(self, request: Request) -> None:
        """Take a finished or cancelled request out, giving its slot back."""
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        if request.slot is not None:
            self._free_slots.append(request.slot)
        request.status = RequestStatus.FINISHED

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_free_slots(self) -> int:
        return len(self._free_slots)

    # -- planning -------------------------------------------------------------------------------

    def schedule(self) -> tuple[list[ScheduledEntry], list[Request]]:
        """Plan one step; return the batch and the requests newly given a slot."""
        budget = self.max_batch_tokens
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

    @staticmethod
    def _plan_prefill(request: Request, budget: int, plan: list[ScheduledEntry]) -> int:
        size = min(request.remaining_prompt, budget)
        start = request.num_computed
        chunk = request.prompt_tokens[start:start + size]
        completes = start + size >= request.num_prompt_tokens
        plan.append(ScheduledEntry(request, BatchEntry(request.slot or 0, chunk, start,
                                                       completes)))
        return size

"""Which sequence slot a new request gets, chosen so that it can reuse a cached prompt prefix.

A finished request leaves its keys and values in its slot; the slot remembers which tokens
those are. A new request takes the free slot whose remembered tokens share the longest prefix
with its prompt (a repeated system prompt, the earlier turns of a chat), and skips computing
that prefix. Keys and values depend on the LoRA adapter that computed them, so a prefix only
counts for a request with the same adapter. With no match it takes the slot used longest ago,
so that recent prefixes survive.

This module is pure bookkeeping over token lists; whether llama.cpp can actually keep a prefix
(sliding-window layers may have dropped part of it) is the runner's call, made when the engine
trims the slot.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

_clock = itertools.count(1)
# A shorter match (every prompt starts with BOS; word salads share a first word) saves almost
# nothing, and taking that slot would evict a prefix worth keeping in favour of the LRU one.
MIN_REUSED_TOKENS = 8


@dataclass(slots=True)
class SlotMemory:
    """What one slot's KV cache holds: ``tokens`` at positions ``0 .. len(tokens) - 1``."""

    tokens: list[int] = field(default_factory=list)
    adapter: str | None = None  # the LoRA adapter the keys and values were computed with
    last_used: int = 0  # a logical clock, so ties break by recency without reading time


@dataclass(frozen=True, slots=True)
class SlotChoice:
    slot: int
    cached: int  # prompt tokens already in the slot that the request may keep


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    limit = min(len(a), len(b))
    if limit == 0 or a[0] != b[0]:
        return 0
    if a[:limit] == b[:limit]:
        return limit
    low, high = 1, limit  # a[:low] == b[:low] and a[:high] != b[:high]
    while high - low > 1:  # slice comparison runs in C; bisecting beats a Python loop
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low


class SlotTable:
    """The free and busy slots, and the tokens each free slot still holds."""

    def __init__(self, num_slots: int, *, enabled: bool = True,
                 cached_tokens_budget: int | None = None) -> None:
        self.enabled = enabled
        # all slots share one KV buffer, and attention scans every cell in use, including
        # cached prefixes no running request needs: free slots keep at most this many tokens
        self.cached_tokens_budget = cached_tokens_budget
        self._memory = [SlotMemory() for _ in range(num_slots)]
        self._free: set[int] = set(range(num_slots))

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def cached_tokens(self) -> int:
        """Tokens the free slots hold for later requests."""
        return sum(len(self._memory[slot].tokens) for slot in self._free)

    def can_acquire(self) -> bool:
        return bool(self._free)

    def acquire(self, prompt: list[int], adapter: str | None = None) -> SlotChoice:
        """Take the free slot that best serves ``prompt``.

        At most ``len(prompt) - 1`` tokens count as cached: the last prompt token must go through
        the model again, because its logits choose the first output token.
        """
        best = SlotChoice(self._least_recent_free(), 0)
        if self.enabled:
            for slot in self._free:
                memory = self._memory[slot]
                if memory.adapter != adapter:
                    continue
                cached = min(common_prefix(memory.tokens, prompt), len(prompt) - 1)
                if cached > best.cached and cached >= MIN_REUSED_TOKENS:
                    best = SlotChoice(slot, cached)
        self._free.remove(best.slot)
        return best

    def release(self, slot: int, tokens: list[int], adapter: str | None = None) -> list[int]:
        """Give ``slot`` back, remembering the tokens its KV cache now holds (computed with
        ``adapter``); return the slots whose cells should be cleared: this one if it keeps
        nothing, and the oldest cached prefixes beyond ``cached_tokens_budget``."""
        kept = tokens if self.enabled else []
        self._memory[slot] = SlotMemory(kept, adapter, next(_clock))
        self._free.add(slot)
        stale = [] if self.cached_tokens_budget is None else self.evict(self.cached_tokens_budget)
        return stale if kept else [*stale, slot]

    def evict(self, budget: int) -> list[int]:
        """Forget the prefixes of the least recently used free slots until the free slots
        hold at most ``budget`` tokens; return the slots whose cells should be cleared."""
        free = sorted(self._free, key=lambda slot: self._memory[slot].last_used)
        held = self.cached_tokens
        evicted: list[int] = []
        for slot in free:
            if held <= budget:
                break
            if self._memory[slot].tokens:
                held -= len(self._memory[slot].tokens)
                self._memory[slot].tokens = []
                evicted.append(slot)
        return evicted

    def trimmed(self, slot: int, keep: int) -> None:
        """Record that only the first ``keep`` tokens of ``slot`` survived a trim."""
        del self._memory[slot].tokens[keep:]

    def _least_recent_free(self) -> int:
        return min(self._free, key=lambda slot: (self._memory[slot].last_used, slot))

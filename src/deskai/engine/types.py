"""The neutral values that cross the engine contract: facts, deltas, logprobs, stats.

Nothing here knows which backend produced it; the server, the runtime, the CLI and agents
read these and nothing else of an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np

ModelKind = Literal["text", "embedding"]


class FinishReason(StrEnum):
    STOP = "stop"          # end-of-generation token or a stop string
    LENGTH = "length"      # max_tokens reached or the context is full
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"    # the request outlived its deadline (``--timeout``)
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """Log-probabilities at one position: the chosen token's, and the top alternatives."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of one request's output; the last one has ``finish_reason`` set."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    error: str | None = None
    logprobs: tuple[TokenLogprobs, ...] = ()  # one per token whose text this delta carries


DeltaSink = Callable[[Delta], None]
"""Receives deltas on the engine's thread; must not block (hand over to a queue)."""


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What a loaded model is, as every client of an engine needs to know it."""

    kind: ModelKind
    context_length: int          # tokens one request may hold: its prompt plus its output
    slots: int                   # requests decoded together
    n_vocab: int
    n_ctx_train: int = 0         # the context the model was trained with (0: unknown)
    chat_template: str | None = None
    bos_token_id: int = -1
    eos_token_id: int = -1
    bos_text: str = ""           # how the template writes the special tokens
    eos_text: str = ""
    embedding_dimensions: int = 0  # for an embedding model


@dataclass(frozen=True, slots=True)
class UsageStats:
    """Requests and KV cache of one adapter (None: the base model) or of the whole engine."""

    running: int = 0
    waiting: int = 0
    kv_used_tokens: int = 0


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A consistent snapshot, taken under the engine's lock: safe to read from any thread."""

    total: UsageStats
    kv_capacity_tokens: int
    last_used: float  # monotonic time of the last request or step
    by_adapter: dict[str | None, UsageStats] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return self.total.running + self.total.waiting > 0

    def of_adapter(self, adapter: str | None) -> UsageStats:
        return self.by_adapter.get(adapter, UsageStats())


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[np.ndarray]
    prompt_tokens: int

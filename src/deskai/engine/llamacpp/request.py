"""One generation request as the llama.cpp engine tracks it: tokens, slot, progress, output."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TYPE_CHECKING

from deskai.engine.detokenizer import IncrementalDetokenizer
from deskai.engine.sampling import SamplingParams
from deskai.engine.types import DeltaSink, FinishReason, TokenLogprobs

if TYPE_CHECKING:
    from deskai.engine.llamacpp.runner import RequestSampler


class RequestStatus(Enum):
    WAITING = auto()   # queued, no slot yet
    RUNNING = auto()   # holds a slot: prefilling or decoding
    FINISHED = auto()


@dataclass(eq=False)
class Request:
    """A prompt being completed: its tokens, its slot, its progress and its output."""

    request_id: str
    prompt_tokens: list[int]
    params: SamplingParams
    sink: DeltaSink
    max_total_tokens: int  # the slot's context: prompt + output may not exceed it
    adapter: str | None = None  # the LoRA adapter to generate with; None: the base model
    status: RequestStatus = RequestStatus.WAITING
    slot: int | None = None
    num_computed: int = 0       # prompt tokens already in the KV cache
    num_cached: int = 0         # of those, how many were reused from an earlier request
    num_fed_outputs: int = 0    # output tokens fed back through the model (so in the KV cache)
    output_tokens: list[int] = field(default_factory=list)
    pending_logprobs: list[TokenLogprobs] = field(default_factory=list)  # not yet in a delta
    pending_token: int | None = None  # sampled, not yet fed back through the model
    sampler: RequestSampler | None = None  # None: plain greedy, an argmax (no chain)
    detokenizer: IncrementalDetokenizer = field(init=False)
    cancelled: bool = False
    finish_reason: FinishReason | None = None
    arrival_time: float = field(default_factory=time.monotonic)
    first_token_time: float | None = None
    deadline: float | None = None  # monotonic time after which the engine stops the request

    def __post_init__(self) -> None:
        self.detokenizer = IncrementalDetokenizer(stop=list(self.params.stop))

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_tokens)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_tokens)

    @property
    def is_prefilled(self) -> bool:
        return self.num_computed >= self.num_prompt_tokens

    @property
    def remaining_prompt(self) -> int:
        return self.num_prompt_tokens - self.num_computed

    @property
    def position(self) -> int:
        """Position of the next token to feed through the model."""
        return self.num_prompt_tokens + max(self.num_output_tokens - 1, 0)

    @property
    def reached_length_limit(self) -> bool:
        at_max = (self.params.max_tokens is not None
                  and self.num_output_tokens >= self.params.max_tokens)
        return at_max or self.num_prompt_tokens + self.num_output_tokens >= self.max_total_tokens

    @property
    def kv_tokens(self) -> list[int]:
        """The tokens whose keys and values this request left in its slot, in order."""
        return self.prompt_tokens[:self.num_computed] + self.output_tokens[:self.num_fed_outputs]

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def cancel(self) -> None:
        """Ask the engine to stop this request; it frees the slot at the next step."""
        self.cancelled = True

"""How one request wants its tokens chosen and when it wants to stop."""

from __future__ import annotations

from dataclasses import dataclass, field

from deskai.errors import InvalidInputError

MAX_STOP_SEQUENCES = 16


@dataclass(slots=True)
class SamplingParams:
    """Per-request sampling settings, validated on construction.

    ``temperature == 0`` means greedy decoding. ``seed`` makes sampling repeatable: the same
    seed, prompt and settings give the same output. ``max_tokens=None`` means "until the
    context is full or the model stops".
    """

    max_tokens: int | None = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None  # GBNF; output is constrained to it
    grammar_triggers: list[str] = field(default_factory=list)  # lazy: constrain from a match
    logprobs: int | None = None  # report the chosen token's logprob and this many top ones

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be at least 1, got {self.max_tokens}",
                                    param="max_tokens")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidInputError(f"temperature must be between 0 and 2, got {self.temperature}",
                                    param="temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInputError(f"top_p must be in (0, 1], got {self.top_p}", param="top_p")
        if self.top_k < 0:
            raise InvalidInputError(f"top_k must be 0 (off) or more, got {self.top_k}",
                                    param="top_k")
        if not 0.0 <= self.min_p <= 1.0:
            raise InvalidInputError(f"min_p must be in [0, 1], got {self.min_p}", param="min_p")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise InvalidInputError("seed must be between 0 and 2**32 - 1", param="seed")
        if len(self.stop) > MAX_STOP_SEQUENCES:
            raise InvalidInputError(f"at most {MAX_STOP_SEQUENCES} stop sequences",
                                    param="stop")
        if any(not s for s in self.stop):
            raise InvalidInputError("stop sequences must not be empty", param="stop")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise InvalidInputError(f"{name} must be between -2 and 2", param=name)
        if any(not -100 <= bias <= 100 for bias in self.logit_bias.values()):
            raise InvalidInputError("logit_bias values must be between -100 and 100",
                                    param="logit_bias")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise InvalidInputError("top_logprobs must be between 0 and 20",
                                    param="top_logprobs")
        if self.repeat_penalty <= 0:
            raise InvalidInputError("repeat_penalty must be positive", param="repeat_penalty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

"""How one request wants its tokens chosen and when it wants to stop — for any backend.

The limits and defaults live here once: ``SamplingParams`` checks them on construction (the
CLI, agents and library callers), and the API's wire models take the same bounds from
``BOUNDS`` (so a bad value is a 400 naming the field before anything is converted).

Structured output is neutral too: a JSON schema, a regular expression, or a grammar in the
backend's own language; the backend that runs the request compiles it, and refuses (a 400)
what it cannot enforce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from deskai.errors import InvalidInputError

MAX_STOP_SEQUENCES = 16  # a caller's own
# room for those a chat format adds (the fallback transcript's "\nUser:"), so a caller's
# documented 16 still fit
MAX_TOTAL_STOPS = MAX_STOP_SEQUENCES + 4
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True, slots=True)
class Bound:
    """An allowed range: ``low`` (exclusive when ``low_open``) to ``high``, inclusive."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}]"
        if self.low is not None:
            return f"{'above' if self.low_open else 'at least'} {low}"
        return f"at most {high}"

    def pydantic(self) -> dict[str, Any]:
        """The same range as pydantic ``Field`` keywords, for the wire models."""
        keywords: dict[str, Any] = {}
        if self.low is not None:
            keywords["gt" if self.low_open else "ge"] = self.low
        if self.high is not None:
            keywords["le"] = self.high
        return keywords


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value:g}"


INT32_MAX = 2**31 - 1  # what a backend's C API takes for a count

BOUNDS: dict[str, Bound] = {
    "max_tokens": Bound(1, INT32_MAX),
    "temperature": Bound(0.0, 2.0),
    "top_p": Bound(0.0, 1.0, low_open=True),
    "top_k": Bound(0, INT32_MAX),
    "min_p": Bound(0.0, 1.0),
    "seed": Bound(0, 2**32 - 1),
    "repeat_penalty": Bound(0.0, low_open=True),
    "presence_penalty": Bound(-2.0, 2.0),
    "frequency_penalty": Bound(-2.0, 2.0),
    "logit_bias": Bound(-100.0, 100.0),  # each bias
    "logprobs": Bound(0, MAX_TOP_LOGPROBS),
}


@dataclass(frozen=True, slots=True)
class StructuredOutput:
    """Output constrained to exactly one of a JSON schema, a regex or a backend grammar.

    ``or_text`` (JSON schema only) also lets the model answer in plain text that does not open
    like JSON: a tool call *or* an answer, as ``tool_choice: auto`` means. ``lenient`` lets the
    backend drop the schema keywords it cannot enforce rather than refuse them — for tool
    arguments, which the tool validates itself (an MCP server's ``minimum`` must not make every
    turn a 400); an output format stays strict. ``field`` names the request field it came
    from, so a backend's refusal points at it.
    """

    json_schema: dict[str, Any] | None = None
    regex: str | None = None
    grammar: str | None = None
    or_text: bool = False
    lenient: bool = False
    field: str = "response_format"

    def __post_init__(self) -> None:
        given = [name for name in ("json_schema", "regex", "grammar")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise InvalidInputError("structured output needs exactly one of a JSON schema, a "
                                    "regex or a grammar", param=self.field)
        if self.or_text and self.json_schema is None:
            raise InvalidInputError("only a JSON schema can allow plain text beside it",
                                    param=self.field)


@dataclass(slots=True)
class SamplingParams:
    """Per-request sampling settings, validated on construction.

    ``temperature == 0`` means greedy decoding. ``seed`` makes sampling repeatable: the same
    seed, prompt and settings give the same output. ``max_tokens=None`` means "until the
    context is full or the model stops". The defaults are llama.cpp's and Ollama's.
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
    structured: StructuredOutput | None = None  # output constrained to this
    logprobs: int | None = None  # report the chosen token's logprob and this many top ones

    def __post_init__(self) -> None:
        for name, bound in BOUNDS.items():
            values = (self.logit_bias.values() if name == "logit_bias"
                      else [getattr(self, name)])
            for value in values:
                # an int of any size compares fine; only floats can be NaN or infinite
                finite = not isinstance(value, float) or math.isfinite(value)
                if value is not None and not (finite and bound.contains(value)):
                    raise InvalidInputError(f"{name} must be {bound.describe()}, got "
                                            f"{str(value)[:24]}", param=name)
        if len(self.stop) > MAX_TOTAL_STOPS:
            raise InvalidInputError(f"at most {MAX_STOP_SEQUENCES} stop sequences", param="stop")
        if any(not s for s in self.stop):
            raise InvalidInputError("stop sequences must not be empty", param="stop")

    @classmethod
    def given(cls, *, max_tokens: int | None, **values: Any) -> SamplingParams:
        """Settings from a request, where ``None`` means "not given" and keeps the default —
        except ``max_tokens``, where ``None`` means no limit (an API's own default is its
        caller's to apply)."""
        return cls(max_tokens=max_tokens,
                   **{name: value for name, value in values.items() if value is not None})

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


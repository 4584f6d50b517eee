"""The engine contract: what every backend offers, and the only way anything else reaches one.

A backend (llama.cpp in ``engine.llamacpp``, a fake in the tests, later a GPU engine or a
remote replica on a cluster) implements ``Engine``. The runtime loads engines through an
``EngineFactory``; the server, the CLI and agents hold an ``Engine`` and the neutral types of
``engine.types`` and ``engine.sampling`` — never a backend's own classes.

Generation is push-based and thread-safe: ``submit`` queues a request and returns at once with
a handle; the engine calls the sink with ``Delta``s from its own thread until one carries a
``finish_reason``; ``handle.cancel()`` aborts it (the engine frees its resources at its next
step and sends a final ``CANCELLED`` delta). ``generate`` wraps that as a blocking iterator.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from deskai.engine.sampling import SamplingParams
from deskai.engine.types import Delta, DeltaSink, Embeddings, EngineStats, ModelFacts, ModelKind


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How a model is loaded: context per slot, slots, threads, batch size, queue bound."""

    context_length: int = 4096
    parallel: int = 4
    threads: int = 1
    batch_tokens: int = 512
    max_queue: int = 64
    request_timeout: float | None = None  # seconds from arrival to the last token; None: none
    prefix_cache: bool = True
    batch_invariant: bool = False  # one forward pass per sequence: batched output == solo
    gpu_layers: int = 0  # layers offloaded to the GPU (the runtime's placement decides)
    flash_attn: bool = False  # on where layers run on a GPU


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A prompt (text, or token ids in the model's vocabulary) and how to continue it."""

    prompt: str | Sequence[int]
    params: SamplingParams
    add_special: bool = True  # let the tokenizer add BOS (False when the template wrote it)
    adapter: str | None = None  # a LoRA loaded with ``load_adapter``; None: the base model


class RequestHandle(Protocol):
    """A submitted request, as its submitter holds it."""

    request_id: str

    def cancel(self) -> None:
        """Abort: the engine stops the request at its next step."""


@runtime_checkable
class Engine(Protocol):
    """One loaded model serving many requests."""

    @property
    def facts(self) -> ModelFacts: ...

    def submit(self, request: GenerationRequest, sink: DeltaSink) -> RequestHandle:
        """Queue ``request``; bad input (too long, bad grammar) raises here, on the caller's
        thread; a full queue raises ``OverloadedError``."""
        ...

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (a piece of a UTF-8 character, possibly)."""
        ...

    def embed(self, inputs: list[str] | list[list[int]]) -> Embeddings: ...

    def load_adapter(self, key: str, path: Path) -> None:
        """Make a LoRA adapter available to requests as ``adapter=key``."""
        ...

    def stats(self) -> EngineStats: ...

    def close(self) -> None:
        """Cancel what is in flight and free the model's memory."""
        ...


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the runtime asks a factory to load."""

    name: str
    path: Path
    kind: ModelKind
    architecture: str


EngineFactory = Callable[[ModelSpec, EngineOptions], Engine]


def generate(engine: Engine, request: GenerationRequest) -> Iterator[Delta]:
    """Yield ``request``'s deltas until it finishes; closing the iterator cancels it."""
    deltas: queue.SimpleQueue[Delta] = queue.SimpleQueue()
    handle = engine.submit(request, deltas.put)
    try:
        while True:
            delta = deltas.get()
            yield delta
            if delta.finish_reason is not None:
                return
    finally:
        handle.cancel()

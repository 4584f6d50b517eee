"""A fake backend implementing the engine contract, for fast tests of the layers above it.

``FakeEngine`` is a byte-level "model" that answers a prompt by echoing it back, one byte per
token per step, on its own thread, with real slots, a real queue bound and real cancellation —
so the routes, the runtime manager and the metrics can be driven in milliseconds, and
``FakeBackend`` remembers every request it received, so a test can check what arrived.
It records structured output but cannot enforce it: what a model says, grammars and speed are
tested on the real model.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deskai.engine import (
    Delta,
    DeltaSink,
    Embeddings,
    EngineOptions,
    EngineStats,
    FinishReason,
    GenerationRequest,
    ModelFacts,
    ModelSpec,
    UsageStats,
)
from deskai.engine.detokenizer import IncrementalDetokenizer
from deskai.errors import ContextLengthError, EngineError, InvalidInputError, OverloadedError

BOS = 256
N_VOCAB = 257
_ids = itertools.count(1)


@dataclass(eq=False)
class FakeRequest:
    request: GenerationRequest
    sink: DeltaSink
    prompt_tokens: list[int]
    request_id: str = field(default_factory=lambda: f"fake-{next(_ids)}")
    output: list[int] = field(default_factory=list)
    cancelled: bool = False
    running: bool = False
    detokenizer: IncrementalDetokenizer = field(init=False)

    def __post_init__(self) -> None:
        self.detokenizer = IncrementalDetokenizer(stop=list(self.request.params.stop))

    def cancel(self) -> None:
        self.cancelled = True

    def next_token(self) -> int | None:
        """The echo: the prompt's bytes (BOS skipped) in order, then the end of the answer."""
        text = [t for t in self.prompt_tokens if t != BOS]
        return text[len(self.output)] if len(self.output) < len(text) else None


class FakeEngine:
    """The contract, over a byte "tokenizer" and an echo "model"; one step every
    ``step_seconds``."""

    def __init__(self, spec: ModelSpec, options: EngineOptions, *,
                 step_seconds: float = 0.002) -> None:
        self.spec = spec
        self.options = options
        self.facts = ModelFacts(kind=spec.kind, context_length=options.context_length,
                                slots=options.parallel, n_vocab=N_VOCAB, bos_token_id=BOS,
                                eos_token_id=BOS, embedding_dimensions=8)
        self.step_seconds = step_seconds
        self.submitted: list[GenerationRequest] = []
        self.adapters: dict[str, Path] = {}
        self.closed = False
        self._lock = threading.Condition()
        self._running: list[FakeRequest] = []
        self._waiting: list[FakeRequest] = []
        self._last_used = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="fake-engine")
        self._thread.start()

    # -- the contract ---------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, sink: DeltaSink) -> FakeRequest:
        if self.facts.kind != "text":
            raise InvalidInputError("an embedding model cannot generate", param="model")
        prompt = request.prompt
        tokens = (self.tokenize(prompt, add_special=request.add_special)
                  if isinstance(prompt, str) else list(prompt))
        if any(not 0 <= token < N_VOCAB for token in tokens):
            raise InvalidInputError(f"token ids must be between 0 and {N_VOCAB - 1}",
                                    param="prompt")
        if len(tokens) >= self.facts.context_length:
            raise ContextLengthError(f"the prompt has {len(tokens)} tokens")
        if request.adapter is not None and request.adapter not in self.adapters:
            raise EngineError(f"the LoRA adapter {request.adapter} is not loaded")
        queued = FakeRequest(request, sink, tokens)
        with self._lock:
            if self.closed:
                raise EngineError("the model is being unloaded")
            if len(self._waiting) >= self.options.max_queue + self._free_slots():
                raise OverloadedError("fake engine busy", retry_after=1)
            self.submitted.append(request)
            self._waiting.append(queued)
            self._last_used = time.monotonic()
            self._lock.notify()
        return queued

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return ([BOS] if add_special else []) + list(text.encode("utf-8"))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        return b"" if token == BOS else bytes([token])

    def embed(self, inputs: list[str] | list[list[int]]) -> Embeddings:
        raise InvalidInputError("the fake backend has no embeddings", param="model")

    def load_adapter(self, key: str, path: Path) -> None:
        self.adapters[key] = path

    def stats(self) -> EngineStats:
        with self._lock:
            running, waiting = list(self._running), list(self._waiting)
        by_adapter = {
            adapter: UsageStats(
                running=sum(r.request.adapter == adapter for r in running),
                waiting=sum(r.request.adapter == adapter for r in waiting),
                kv_used_tokens=sum(len(r.prompt_tokens) + len(r.output) for r in running
                                   if r.request.adapter == adapter))
            for adapter in {r.request.adapter for r in (*running, *waiting)}}
        total = UsageStats(len(running), len(waiting),
                           sum(u.kv_used_tokens for u in by_adapter.values()))
        return EngineStats(total, self.facts.context_length * self.facts.slots,
                           self._last_used, by_adapter)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._lock.notify_all()
        self._thread.join(timeout=10)

    # -- the step loop --------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return self.options.parallel - len(self._running)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not (self._running or self._waiting or self.closed):
                    self._lock.wait()
                if self.closed:
                    for request in (*self._running, *self._waiting):
                        self._finish(request, FinishReason.CANCELLED)
                    return
                while self._waiting and self._free_slots() > 0:
                    admitted = self._waiting.pop(0)
                    admitted.running = True
                    self._running.append(admitted)
                stepping = list(self._running)
            for request in stepping:
                self._step(request)
            self._last_used = time.monotonic()
            time.sleep(self.step_seconds)

    def _step(self, request: FakeRequest) -> None:
        if request.cancelled:
            self._finish(request, FinishReason.CANCELLED)
            return
        token = request.next_token()
        if token is None:
            self._finish(request, FinishReason.STOP, request.detokenizer.flush())
            return
        request.output.append(token)
        piece = request.detokenizer.push(bytes([token]))
        limit = request.request.params.max_tokens
        if piece.stopped:
            self._finish(request, FinishReason.STOP, piece.text, (token,))
        elif limit is not None and len(request.output) >= limit:
            self._finish(request, FinishReason.LENGTH,
                         piece.text + request.detokenizer.flush(), (token,))
        else:
            request.sink(self._delta(request, piece.text, (token,), None))

    def _finish(self, request: FakeRequest, reason: FinishReason, text: str = "",
                ids: tuple[int, ...] = ()) -> None:
        with self._lock:
            for queue in (self._running, self._waiting):
                if request in queue:
                    queue.remove(request)
        request.sink(self._delta(request, text, ids, reason))

    @staticmethod
    def _delta(request: FakeRequest, text: str, ids: tuple[int, ...],
               reason: FinishReason | None) -> Delta:
        return Delta(text=text, token_ids=ids, finish_reason=reason,
                     prompt_tokens=len(request.prompt_tokens),
                     completion_tokens=len(request.output))


class FakeBackend:
    """An ``EngineFactory`` that makes ``FakeEngine``s and keeps them for inspection."""

    def __init__(self, *, step_seconds: float = 0.002) -> None:
        self.step_seconds = step_seconds
        self.engines: list[FakeEngine] = []

    def __call__(self, spec: ModelSpec, options: EngineOptions) -> FakeEngine:
        engine = FakeEngine(spec, options, step_seconds=self.step_seconds)
        self.engines.append(engine)
        return engine

    @property
    def submitted(self) -> list[GenerationRequest]:
        return [request for engine in self.engines for request in engine.submitted]

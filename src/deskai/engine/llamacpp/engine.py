"""The llama.cpp engine: requests in, a step loop on its own thread, deltas out.

``submit`` queues a prompt; a background thread repeats ``step()`` (schedule → one
``llama_decode`` for every scheduled sequence → sample → postprocess) while there is work.
Implements the contract's ``Engine``; nothing outside ``engine.llamacpp`` sees this class.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from deskai.engine.llamacpp.request import Request
from deskai.engine.llamacpp.runner import LlamaCppRunner, is_plain_greedy
from deskai.engine.llamacpp.scheduler import ScheduledEntry, Scheduler
from deskai.engine.protocol import EngineOptions, GenerationRequest
from deskai.engine.types import (
    Delta,
    DeltaSink,
    Embeddings,
    EngineStats,
    FinishReason,
    ModelFacts,
    TokenLogprobs,
    UsageStats,
)
from deskai.errors import ContextLengthError, DeskaiError, EngineError, InvalidInputError

_request_ids = itertools.count(1)
log = logging.getLogger("deskai.engine")


class LlamaCppEngine:
    """One loaded GGUF model serving many requests with continuous batching."""

    def __init__(self, model_path: str | Path, options: EngineOptions) -> None:
        self.options = options
        self.runner = LlamaCppRunner(model_path, n_ctx_per_seq=options.context_length,
                                     n_seq=options.parallel, n_threads=options.threads,
                                     n_batch=options.batch_tokens,
                                     slot_per_stream=options.batch_invariant,
                                     gpu_layers=options.gpu_layers,
                                     flash_attn=options.flash_attn)
        self.scheduler = Scheduler(options.parallel, options.batch_tokens, options.max_queue,
                                   reuse=self.runner.keep_prefix,
                                   # a reused prefix was computed in other chunks
                                   prefix_cache=options.prefix_cache
                                   and not options.batch_invariant,
                                   batch_invariant=options.batch_invariant,
                                   cached_tokens_budget=self.runner.facts.n_ctx_per_seq)
        self.facts = self._model_facts()
        self._work = threading.Condition()
        # deltas of a step wait here until the next llama_decode is about to start (or the
        # engine idles): the sinks wake their consumers (the server's event loop), which then
        # take the GIL while llama.cpp computes, not in the middle of this thread's step
        self._outbox: list[tuple[DeltaSink, Delta]] = []
        self._closing = False
        self.last_used = time.monotonic()
        # The step loop retakes the GIL after every llama.cpp call; with the default 5 ms
        # switch interval a busy event loop (many SSE streams) makes it wait that long each
        # time, stalling llama.cpp's threads. A short interval hands the GIL over promptly.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._thread = threading.Thread(target=self._loop, name="deskai-engine", daemon=True)
        self._thread.start()

    # -- facts ----------------------------------------------------------------------------------

    def _model_facts(self) -> ModelFacts:
        facts = self.runner.facts
        return ModelFacts(kind="text", context_length=facts.n_ctx_per_seq, slots=facts.n_seq,
                          n_vocab=facts.n_vocab, n_ctx_train=facts.n_ctx_train,
                          chat_template=facts.chat_template, bos_token_id=facts.bos_token_id,
                          eos_token_id=facts.eos_token_id,
                          bos_text=self._special_text(facts.bos_token_id),
                          eos_text=self._special_text(facts.eos_token_id))

    def _special_text(self, token: int) -> str:
        return self.runner.token_bytes(token, special=True).decode("utf-8", errors="replace")

    @property
    def context_length(self) -> int:
        """Tokens one request may hold: its prompt plus its output."""
        return self.facts.context_length

    def stats(self) -> EngineStats:
        with self._work:
            running, waiting = list(self.scheduler.running), list(self.scheduler.waiting)
        by_adapter: dict[str | None, UsageStats] = {}
        for adapter in {r.adapter for r in (*running, *waiting)}:
            mine = [r for r in running if r.adapter == adapter]
            by_adapter[adapter] = UsageStats(
                running=len(mine), waiting=sum(r.adapter == adapter for r in waiting),
                kv_used_tokens=sum(r.num_computed + r.num_output_tokens for r in mine))
        total = UsageStats(running=len(running), waiting=len(waiting),
                           kv_used_tokens=sum(u.kv_used_tokens for u in by_adapter.values()))
        return EngineStats(total=total,
                           kv_capacity_tokens=self.context_length * self.options.parallel,
                           last_used=self.last_used, by_adapter=by_adapter)

    def load_adapter(self, key: str, path: Path) -> None:
        """Make LoRA adapter ``key`` available to requests (``adapter=key``)."""
        self.runner.load_adapter(key, Path(path))

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.runner.tokenize(text, add_special=add_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.runner.detokenize(list(tokens))

    def token_bytes(self, token: int) -> bytes:
        return self.runner.token_bytes(token)

    def embed(self, inputs: list[str] | list[list[int]]) -> Embeddings:
        raise InvalidInputError("this model generates text; embeddings need an embedding "
                                "model such as all-MiniLM-L6-v2", param="model")

    # -- requests -------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, sink: DeltaSink) -> Request:
        """Queue a prompt; deltas go to ``sink`` from the engine thread."""
        prompt, params = request.prompt, request.params
        tokens = self.tokenize(prompt, add_special=request.add_special) \
            if isinstance(prompt, str) else list(prompt)
        self._check_fits(tokens)
        if request.adapter is not None and not self.runner.has_adapter(request.adapter):
            raise EngineError(f"the LoRA adapter {request.adapter} is not loaded")
        queued = Request(request_id=f"req-{next(_request_ids)}", prompt_tokens=tokens,
                         params=params, sink=sink, max_total_tokens=self.context_length,
                         adapter=request.adapter)
        # built here, on the caller's thread, so a bad grammar or bias is the caller's 400
        if not is_plain_greedy(params):  # plain greedy is an argmax, no chain
            queued.sampler = self.runner.new_sampler(params)
        if self.options.request_timeout is not None:
            queued.deadline = queued.arrival_time + self.options.request_timeout
        with self._work:
            if self._closing:
                self._free_sampler(queued)
                raise EngineError("the model is being unloaded")
            try:
                self.scheduler.enqueue(queued)
            except DeskaiError:
                self._free_sampler(queued)
                raise
            self.last_used = time.monotonic()
            self._work.notify()
        return queued

    def _check_fits(self, tokens: list[int]) -> None:
        if not tokens:
            raise InvalidInputError("the prompt is empty", param="prompt")
        n_vocab = self.facts.n_vocab
        if any(not 0 <= token < n_vocab for token in tokens):
            raise InvalidInputError(f"token ids must be between 0 and {n_vocab - 1}",
                                    param="prompt")
        if len(tokens) >= self.context_length:
            raise ContextLengthError(
                f"the prompt has {len(tokens)} tokens but this model's context holds "
                f"{self.context_length} (prompt and answer together); shorten the prompt")

    # -- the step loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._work:
                idle = not self.scheduler.has_work
                stale = self.scheduler.compact_when_idle() if idle else []
            if idle:  # otherwise the next step's decode sends them
                self._flush_outbox()
            for slot in stale:
                self.runner.clear_sequence(slot)
            with self._work:
                while not self.scheduler.has_work and not self._closing:
                    self._work.wait()
                closing = self._closing
            if closing:
                self._cancel_everything()
                self._flush_outbox()
                return
            try:
                self.step()
            except Exception:  # a bug must fail its requests, not silently stop the engine
                log.exception("engine step failed; failing the running requests")
                for request in list(self.scheduler.running):
                    self._finish(request, FinishReason.ERROR, error="internal engine error")

    def step(self) -> None:
        """Schedule → run one batch → sample → postprocess."""
        self._stop_cancelled_and_expired()
        with self._work:
            plan, _admitted = self.scheduler.schedule()
        for batch in self._batches(plan):
            self._run(batch)
        self.last_used = time.monotonic()

    def _batches(self, plan: list[ScheduledEntry]) -> list[list[ScheduledEntry]]:
        """One ``llama_decode`` per adapter (llama.cpp applies adapters context-wide), so
        requests for different adapters never share a batch. Batch-invariant mode pays one per
        sequence: the same shapes, so the same rounding, as each request run alone."""
        if self.options.batch_invariant:
            return [[scheduled] for scheduled in plan]
        by_adapter: dict[str | None, list[ScheduledEntry]] = {}
        for scheduled in plan:
            by_adapter.setdefault(scheduled.request.adapter, []).append(scheduled)
        return list(by_adapter.values())

    def _run(self, plan: list[ScheduledEntry]) -> None:
        try:
            self.runner.use_adapter(plan[0].request.adapter)
            entries = [scheduled.entry for scheduled in plan]
            self._flush_outbox()
            rows = self.runner.decode(entries)
        except DeskaiError as exc:
            for scheduled in plan:
                self._finish(scheduled.request, FinishReason.ERROR, error=str(exc))
            return
        self._postprocess(plan, iter(rows))

    def _postprocess(self, plan: list[ScheduledEntry], rows: Iterator[int]) -> None:
        for scheduled in plan:
            request, entry = scheduled.request, scheduled.entry
            if request.is_prefilled:
                request.pending_token = None
                request.num_fed_outputs += 1
            else:
                request.num_computed += len(entry.tokens)
            if entry.wants_logits:
                row = next(rows)
                token = (self.runner.argmax(row) if request.sampler is None
                         else self.runner.sample(request.sampler, row))
                top = request.params.logprobs
                logprobs = self.runner.logprobs(row, token, top) if top is not None else None
                self._accept_token(request, token, logprobs)

    def _accept_token(self, request: Request, token: int,
                      logprobs: TokenLogprobs | None = None) -> None:
        if request.first_token_time is None:
            request.first_token_time = time.monotonic()
        if self.runner.is_end_of_generation(token):
            self._finish(request, FinishReason.STOP, tail=request.detokenizer.flush())
            return
        request.output_tokens.append(token)
        if logprobs is not None:
            request.pending_logprobs.append(logprobs)
        piece = request.detokenizer.push(self.runner.token_bytes(token))
        if piece.stopped:
            self._finish(request, FinishReason.STOP, tail=piece.text, last_token=token)
        elif request.reached_length_limit:
            tail = piece.text + request.detokenizer.flush()
            self._finish(request, FinishReason.LENGTH, tail=tail, last_token=token)
        else:
            request.pending_token = token
            self._send(request, self._delta(request, piece.text, (token,), None))

    def _finish(self, request: Request, reason: FinishReason, *, tail: str = "",
                last_token: int | None = None, error: str | None = None) -> None:
        with self._work:
            # the slot keeps its tokens for the prefix cache, unless a failed decode left them
            # in an unknown state
            stale = self.scheduler.release(request, keep_cache=reason is not FinishReason.ERROR)
        for slot in stale:
            self.runner.clear_sequence(slot)
        self._free_sampler(request)
        request.finish_reason = reason
        ids = (last_token,) if last_token is not None else ()
        self._send(request, self._delta(request, tail, ids, reason, error))

    def _send(self, request: Request, delta: Delta) -> None:
        self._outbox.append((request.sink, delta))

    def _flush_outbox(self) -> None:
        outbox, self._outbox = self._outbox, []
        for sink, delta in outbox:
            sink(delta)

    def _free_sampler(self, request: Request) -> None:
        if request.sampler is not None:
            self.runner.free_sampler(request.sampler)
            request.sampler = None

    @staticmethod
    def _delta(request: Request, text: str, ids: tuple[int, ...],
               reason: FinishReason | None, error: str | None = None) -> Delta:
        logprobs = tuple(request.pending_logprobs)
        request.pending_logprobs.clear()
        return Delta(text=text, token_ids=ids, finish_reason=reason,
                     prompt_tokens=request.num_prompt_tokens,
                     completion_tokens=request.num_output_tokens,
                     cached_tokens=request.num_cached, error=error, logprobs=logprobs)

    def _stop_cancelled_and_expired(self) -> None:
        """Free the slots of requests whose client left or whose deadline passed: this runs
        before every step, so a disconnect costs at most the step already in flight."""
        now = time.monotonic()
        with self._work:
            queued = (*self.scheduler.running, *self.scheduler.waiting)
            stopped = [r for r in queued if r.cancelled or r.expired(now)]
        for request in stopped:
            if request.cancelled:
                self._finish(request, FinishReason.CANCELLED)
            else:
                self._finish(request, FinishReason.TIMEOUT,
                             error=f"the request took longer than the server's "
                                   f"{self.options.request_timeout:g} s timeout")

    def _cancelled_requests(self) -> list[Request]:
        with self._work:
            queued = (*self.scheduler.running, *self.scheduler.waiting)
            return [request for request in queued if request.cancelled]

    def _cancel_everything(self) -> None:
        for request in (*self.scheduler.running, *self.scheduler.waiting):
            request.cancel()
        for request in self._cancelled_requests():
            self._finish(request, FinishReason.CANCELLED)

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the step loop, cancel what is in flight, free llama.cpp's memory."""
        with self._work:
            if self._closing:
                return
            self._closing = True
            self._work.notify_all()
        self._thread.join(timeout=30)
        self.runner.close()

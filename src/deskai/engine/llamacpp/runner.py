"""llama.cpp behind one small class: load a GGUF, run a batch, sample, free a sequence.

With ``embedding.py`` and ``grammar.py``, the only code that touches llama-cpp-python. It knows
nothing about requests or scheduling: the engine tells it which tokens of which sequence to
decode, and it returns sampled tokens. Failures of llama.cpp become ``deskai.errors`` here, in
one place.
"""

from __future__ import annotations

import ctypes
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as llama
import numpy as np

from deskai.engine.llamacpp.grammar import compile_structured
from deskai.engine.llamacpp.scheduler import BatchEntry
from deskai.engine.sampling import SamplingParams
from deskai.engine.types import TokenLogprobs
from deskai.errors import EngineError, InvalidInputError, InvalidModelFileError

_backend_lock = threading.Lock()
_backend_ready = False


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama.llama_log_set(_silent_log, ctypes.c_void_p())
            llama.llama_backend_init()
            _backend_ready = True


def load_model(path: Path, *, gpu_layers: int = 0) -> llama.llama_model_p:
    """Load a GGUF's weights (memory-mapped; the last ``gpu_layers`` on the GPU) or raise
    ``InvalidModelFileError``."""
    _init_backend()
    params = llama.llama_model_default_params()
    params.n_gpu_layers = gpu_layers
    model = llama.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise InvalidModelFileError(f"llama.cpp could not load {path}")
    return model


def tokenize(vocab: llama.llama_vocab_p, text: str, *, add_special: bool) -> list[int]:
    """Token ids of ``text``; special tokens written in it (``<start_of_turn>``) are parsed."""
    data = text.encode("utf-8")
    capacity = len(data) + 8
    buffer = (llama.llama_token * capacity)()
    count = llama.llama_tokenize(vocab, data, len(data), buffer, capacity, add_special, True)
    if count < 0:
        capacity = -count
        buffer = (llama.llama_token * capacity)()
        count = llama.llama_tokenize(vocab, data, len(data), buffer, capacity, add_special,
                                     True)
    if count < 0:
        raise EngineError("tokenization failed")
    return list(buffer[:count])


def supports_gpu_offload() -> bool:
    """Whether this llama.cpp build can run layers on a GPU (CUDA, Metal, Vulkan…)."""
    return bool(llama.llama_supports_gpu_offload())


def token_piece(vocab: llama.llama_vocab_p, token: int, *, special: bool) -> bytes:
    """The bytes of one token as llama.cpp spells it (``special``: control tokens too)."""
    buffer = ctypes.create_string_buffer(64)
    size = llama.llama_token_to_piece(vocab, token, buffer, 64, 0, special)
    if size < 0:
        buffer = ctypes.create_string_buffer(-size)
        size = llama.llama_token_to_piece(vocab, token, buffer, -size, 0, special)
    return buffer.raw[:size]


@llama.llama_log_callback
def _silent_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp logs every tensor at load; deskai logs what matters itself.
    return None


_PENALTY_CANDIDATES = 256
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data


@dataclass(frozen=True, slots=True)
class RequestSampler:
    """A request's sampler chain, and its grammar kept apart (see ``LlamaCppRunner.sample``)."""

    chain: llama.llama_sampler_p
    grammar: llama.llama_sampler_p | None = None


@dataclass(frozen=True, slots=True)
class _Candidates:
    """Every token with its logit, as llama.cpp samplers take them (the buffer kept alive)."""

    data: np.ndarray
    array: llama.llama_token_data_array

    def selected(self) -> int:
        if self.array.selected < 0:
            raise EngineError("no token satisfies the grammar")
        return int(self.array.data[self.array.selected].id)


@dataclass(frozen=True, slots=True)
class RunnerFacts:
    """What the runner learned at load time."""

    n_ctx_train: int
    n_ctx_per_seq: int
    n_seq: int
    n_vocab: int
    chat_template: str | None
    bos_token_id: int
    eos_token_id: int
    n_swa: int = 0  # sliding-window size of the windowed layers; 0 when every layer sees all


class LlamaCppRunner:
    """One llama.cpp model and context with ``n_seq`` independent sequence slots."""

    def __init__(self, model_path: str | Path, *, n_ctx_per_seq: int, n_seq: int,
                 n_threads: int, n_batch: int = 512, slot_per_stream: bool = False,
                 gpu_layers: int = 0, flash_attn: bool = False) -> None:
        _init_backend()
        self._model = load_model(Path(model_path), gpu_layers=gpu_layers)
        self._flash_attn = flash_attn
        try:
            self._vocab = llama.llama_model_get_vocab(self._model)
            n_ctx_train = llama.llama_model_n_ctx_train(self._model)
            per_seq = min(n_ctx_per_seq, n_ctx_train) if n_ctx_train > 0 else n_ctx_per_seq
            self._ctx = self._new_context(per_seq * n_seq, n_seq, n_threads, n_batch,
                                          unified=not slot_per_stream)
        except BaseException:
            llama.llama_model_free(self._model)
            raise
        self._memory = llama.llama_get_memory(self._ctx)
        self.n_batch = n_batch
        self._batch = llama.llama_batch_init(n_batch, 0, 1)
        self.facts = RunnerFacts(
            n_ctx_train=n_ctx_train,
            n_ctx_per_seq=per_seq,
            n_seq=n_seq,
            n_vocab=llama.llama_vocab_n_tokens(self._vocab),
            chat_template=self._chat_template(),
            bos_token_id=llama.llama_vocab_bos(self._vocab),
            eos_token_id=llama.llama_vocab_eos(self._vocab),
            n_swa=max(int(llama.llama_model_n_swa(self._model)), 0),
        )
        self._piece_cache: dict[int, bytes] = {}
        self._eog_cache: dict[int, bool] = {}
        self._token_ids = np.arange(self.facts.n_vocab, dtype=np.int32)  # reused every sample
        self._adapters: dict[str, llama.llama_adapter_lora_p] = {}
        self._adapter_lock = threading.Lock()
        self._active_adapter: str | None = None
        self._closed = False

    # -- loading --------------------------------------------------------------------------------

    def load_adapter(self, key: str, path: Path) -> None:
        """Load a GGUF LoRA over this model's weights, applied per batch as ``key``.

        The base weights are shared: an adapter adds only its own small tensors, and llama.cpp
        frees it with the model.
        """
        with self._adapter_lock:
            if key in self._adapters:
                return
            if self._closed:  # the weights are freed: loading over them would crash
                raise EngineError("the model was unloaded while its adapter was loading")
            adapter = llama.llama_adapter_lora_init(self._model, str(path).encode())
            if not adapter:
                raise InvalidModelFileError(f"llama.cpp could not load the LoRA adapter {path}")
            self._adapters[key] = adapter

    def has_adapter(self, key: str) -> bool:
        with self._adapter_lock:
            return key in self._adapters

    def use_adapter(self, key: str | None) -> None:
        """Apply adapter ``key`` (None: the bare base model) to the following decodes.

        llama.cpp applies adapters to a whole context, so the engine decodes each adapter's
        sequences as a batch of their own and switches in between; a switch swaps the
        context's adapter list (and rebuilds the compute graph once).
        """
        if key == self._active_adapter:
            return
        if key is None:
            status = llama.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            with self._adapter_lock:
                adapter = self._adapters[key]
            adapters = (llama.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(1.0)
            status = llama.llama_set_adapters_lora(self._ctx, adapters, 1, scales)
        if status != 0:
            raise EngineError(f"llama.cpp could not apply the LoRA adapter {key}")
        self._active_adapter = key

    def _new_context(self, n_ctx: int, n_seq: int, n_threads: int, n_batch: int, *,
                     unified: bool) -> llama.llama_context_p:
        params = llama.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        # One KV buffer shared by every slot. With one buffer per slot (kv_unified off)
        # llama.cpp must split a batch into a micro-batch per run of consecutive slot ids with
        # equal token counts: slots {0, 2, 4, ...} decode one at a time, about 3x slower, and
        # a prompt chunk beside decodes splits too. Unified, any mix is one micro-batch. No
        # slot can starve another: the engine caps each request at n_ctx / n_seq tokens.
        # Batch-invariant mode decodes each sequence alone anyway, and wants a slot's cells laid
        # out exactly as when it runs alone (the attention sums in cell order): one per slot.
        params.kv_unified = unified
        # Windowed layers keep only their window (plus a batch) per slot, as llama-server
        # does; llama.cpp's own default is a full-size cache for them.
        params.swa_full = False
        if self._flash_attn:  # chosen with the placement: layers on a GPU
            params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.no_perf = True
        ctx = llama.llama_init_from_model(self._model, params)
        if not ctx:
            raise EngineError(f"llama.cpp could not create a context of {n_ctx} tokens")
        return ctx

    def _chat_template(self) -> str | None:
        raw = llama.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)
        llama.llama_model_free(self._model)

    # -- text -----------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        return tokenize(self._vocab, text, add_special=add_special)

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        if not special:  # the hot path: one lookup per generated token
            piece = self._piece_cache.get(token)
            if piece is None:
                piece = self._piece_cache[token] = self._token_bytes(token, special=False)
            return piece
        return self._token_bytes(token, special=True)

    def _token_bytes(self, token: int, *, special: bool) -> bytes:
        return token_piece(self._vocab, token, special=special)

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        # cached: every ctypes call drops and retakes the GIL, a wait when the server's event
        # loop holds it, and this runs once per sequence per step
        eog = self._eog_cache.get(token)
        if eog is None:
            eog = self._eog_cache[token] = bool(llama.llama_vocab_is_eog(self._vocab, token))
        return eog

    # -- running --------------------------------------------------------------------------------

    def decode(self, entries: list[BatchEntry]) -> list[int]:
        """Run one ``llama_decode`` over all entries; return batch indices of the logits rows.

        The returned list holds, for each entry that wants logits, the index to sample from.
        """
        batch = self._batch
        n = 0
        rows: list[int] = []
        for entry in entries:
            for offset, token in enumerate(entry.tokens):
                batch.token[n] = token
                batch.pos[n] = entry.start_pos + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = entry.seq_id
                last = offset == len(entry.tokens) - 1
                batch.logits[n] = entry.wants_logits and last
                if entry.wants_logits and last:
                    rows.append(n)
                n += 1
        if n > self.n_batch:
            raise EngineError(f"batch of {n} tokens exceeds n_batch {self.n_batch}")
        batch.n_tokens = n
        status = llama.llama_decode(self._ctx, batch)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status}")
        return rows

    def new_sampler(self, params: SamplingParams) -> RequestSampler:
        """One request's samplers: the chain (biases → penalties → pick) and its grammar."""
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        grammar = None
        try:
            for sampler in self._constraints(params):
                llama.llama_sampler_chain_add(chain, sampler)
            if params.structured is not None:
                grammar = self._grammar_sampler(compile_structured(params.structured),
                                               params.structured.field)
        except BaseException:
            llama.llama_sampler_free(chain)
            raise
        for sampler in self._pickers(params):
            llama.llama_sampler_chain_add(chain, sampler)
        return RequestSampler(chain, grammar)

    @staticmethod
    def _pickers(params: SamplingParams) -> Iterator[llama.llama_sampler_p]:
        if params.greedy:
            yield llama.llama_sampler_init_greedy()
            return
        if params.top_k > 0:
            yield llama.llama_sampler_init_top_k(params.top_k)
        yield llama.llama_sampler_init_top_p(params.top_p, 1)
        if params.min_p > 0:
            yield llama.llama_sampler_init_min_p(params.min_p, 1)
        yield llama.llama_sampler_init_temp(params.temperature)
        yield llama.llama_sampler_init_dist(
            params.seed if params.seed is not None else llama.LLAMA_DEFAULT_SEED)

    def _constraints(self, params: SamplingParams) -> Iterator[llama.llama_sampler_p]:
        """The samplers that reshape logits before a token is picked."""
        if params.logit_bias:
            n_vocab = self.facts.n_vocab
            if any(not 0 <= token < n_vocab for token in params.logit_bias):
                raise InvalidInputError(f"logit_bias token ids must be between 0 and "
                                        f"{n_vocab - 1}", param="logit_bias")
            biases = (llama.llama_logit_bias * len(params.logit_bias))(
                *(llama.llama_logit_bias(token, bias) for token, bias in params.logit_bias.items()))
            yield llama.llama_sampler_init_logit_bias(n_vocab, len(params.logit_bias), biases)
        if (params.repeat_penalty, params.frequency_penalty, params.presence_penalty) != (1, 0, 0):
            # penalties scan every candidate: narrow to the likely ones first (llama.cpp's
            # advice), wide enough that a penalty never runs out of alternatives
            yield llama.llama_sampler_init_top_k(max(params.top_k, _PENALTY_CANDIDATES))
            yield llama.llama_sampler_init_penalties(self.facts.n_vocab, 256,
                                                     params.repeat_penalty,
                                                     params.frequency_penalty,
                                                     params.presence_penalty)

    def _grammar_sampler(self, grammar: str, field: str) -> llama.llama_sampler_p:
        sampler = llama.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        if not sampler:
            raise InvalidInputError("the grammar could not be parsed", param=field)
        return sampler

    def logprobs(self, row: int, token: int, top: int) -> TokenLogprobs:
        """The chosen token's log-probability and the ``top`` most likely alternatives."""
        logits = np.ctypeslib.as_array(llama.llama_get_logits_ith(self._ctx, row),
                                       shape=(self.facts.n_vocab,))
        shifted = logits - logits.max()
        log_probs = shifted - np.log(np.exp(shifted).sum())
        best = np.argpartition(-log_probs, top)[:top] if top else np.array([], dtype=int)
        best = best[np.argsort(-log_probs[best])]
        return TokenLogprobs(token, float(log_probs[token]),
                             tuple((int(t), float(log_probs[t])) for t in best))

    def sample(self, sampler: RequestSampler, row: int) -> int:
        """Pick a token from the logits at batch index ``row`` (the samplers see it too).

        With a grammar, the unconstrained pick is tried first and the grammar checked on that
        one token; only when it is refused is the grammar applied to the whole vocabulary
        (as llama.cpp's own sampler does: far cheaper than filtering 262k tokens each step).
        """
        if sampler.grammar is None:
            return int(llama.llama_sampler_sample(sampler.chain, self._ctx, row))
        candidates = self._candidates(row)
        llama.llama_sampler_apply(sampler.chain, ctypes.byref(candidates.array))
        token = candidates.selected()
        if not self._grammar_allows(sampler.grammar, token):
            candidates = self._candidates(row)
            llama.llama_sampler_apply(sampler.grammar, ctypes.byref(candidates.array))
            llama.llama_sampler_apply(sampler.chain, ctypes.byref(candidates.array))
            token = candidates.selected()
        llama.llama_sampler_accept(sampler.grammar, token)
        llama.llama_sampler_accept(sampler.chain, token)
        return token

    def argmax(self, row: int) -> int:
        """Greedy pick for a request with no sampler (see ``is_plain_greedy``).

        llama.cpp's greedy sampler first copies all 262k candidates into an array; an argmax
        over the logits in place is the same choice (the first maximum) at a fraction of the
        cost, paid once per sequence per step.
        """
        logits = llama.llama_get_logits_ith(self._ctx, row)
        return int(np.argmax(np.ctypeslib.as_array(logits, shape=(self.facts.n_vocab,))))

    def _candidates(self, row: int) -> _Candidates:
        n_vocab = self.facts.n_vocab
        logits = np.ctypeslib.as_array(llama.llama_get_logits_ith(self._ctx, row),
                                       shape=(n_vocab,))
        data = np.empty(n_vocab, dtype=_TOKEN_DATA)
        data["id"] = self._token_ids
        data["logit"] = logits
        data["p"] = 0.0
        array = llama.llama_token_data_array(
            data.ctypes.data_as(llama.llama_token_data_p), n_vocab, -1, False)
        return _Candidates(data, array)

    @staticmethod
    def _grammar_allows(grammar: llama.llama_sampler_p, token: int) -> bool:
        single = llama.llama_token_data(token, 1.0, 0.0)
        array = llama.llama_token_data_array(ctypes.pointer(single), 1, -1, False)
        llama.llama_sampler_apply(grammar, ctypes.byref(array))
        return bool(np.isfinite(array.data[0].logit))

    @staticmethod
    def free_sampler(sampler: RequestSampler) -> None:
        llama.llama_sampler_free(sampler.chain)
        if sampler.grammar is not None:
            llama.llama_sampler_free(sampler.grammar)

    def clear_sequence(self, seq_id: int) -> None:
        llama.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

    # -- slots and the prefix cache (used by the engine's scheduler) ----------------------------

    def keep_prefix(self, seq_id: int, keep: int) -> int:
        """Drop everything in ``seq_id`` from position ``keep`` on; return how much was kept.

        Windowed (SWA) layers only hold the last ``n_swa`` positions plus a batch, so a prefix
        whose window was already overwritten cannot be resumed: llama.cpp's server checks the
        same ``pos_min`` bound. Then, or if llama.cpp refuses a partial removal (recurrent
        memory), the slot is cleared and nothing is kept.
        """
        if keep > 0 and not self._window_intact(seq_id, keep):
            keep = 0
        if keep > 0 and llama.llama_memory_seq_rm(self._memory, seq_id, keep, -1):
            return keep
        self.clear_sequence(seq_id)
        return 0

    def _window_intact(self, seq_id: int, keep: int) -> bool:
        pos_min = llama.llama_memory_seq_pos_min(self._memory, seq_id)
        if pos_min < 0:
            return False  # nothing cached at all
        return self.facts.n_swa == 0 or pos_min <= max(0, keep - self.facts.n_swa)


def is_plain_greedy(params: SamplingParams) -> bool:
    """Greedy with nothing that reshapes the logits: the engine then skips the sampler chain
    and takes ``argmax``. Any other field away from its default (penalties, biases, grammars,
    features added later) may change the pick, so it gets a real chain."""
    if not params.greedy:
        return False
    defaults = SamplingParams()
    return all(getattr(params, f.name) == getattr(defaults, f.name)
               for f in dataclasses.fields(params) if f.name not in _PICK_NEUTRAL)


# fields that cannot change which token greedy picks
_PICK_NEUTRAL = frozenset({"max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
                           "logprobs"})

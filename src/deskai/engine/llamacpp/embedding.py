"""Sentence embeddings on llama.cpp: many inputs per ``llama_decode``, pooled per sequence.

An embedding model (BERT-style, e.g. all-MiniLM-L6-v2 converted to GGUF) is loaded with
``embeddings=True`` and the pooling its GGUF declares; each input gets its own sequence id, so a
list of inputs is embedded in as few decodes as the batch allows. Vectors are L2-normalised, as
sentence-transformers and OpenAI's embeddings are. Implements the contract's ``Engine`` (its
generation calls refuse: an embedding model has no next token to give).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import llama_cpp as llama
import numpy as np

from deskai.engine.llamacpp.runner import load_model, token_piece, tokenize
from deskai.engine.protocol import GenerationRequest, RequestHandle
from deskai.engine.types import DeltaSink, Embeddings, EngineStats, ModelFacts, UsageStats
from deskai.errors import ContextLengthError, EngineError, InvalidInputError


class LlamaCppEmbedder:
    """One embedding model; ``embed`` is thread-safe (calls are serialised)."""

    def __init__(self, model_path: str | Path, *, threads: int, batch_tokens: int = 2048,
                 max_inputs_per_batch: int = 64) -> None:
        self._model = load_model(Path(model_path))
        self._vocab = llama.llama_model_get_vocab(self._model)
        self.context_length = min(llama.llama_model_n_ctx_train(self._model) or 512,
                                  batch_tokens)
        self.dimensions = llama.llama_model_n_embd(self._model)
        self._max_seqs = max_inputs_per_batch
        self._ctx = self._new_context(batch_tokens, threads)
        self._batch = llama.llama_batch_init(batch_tokens, 0, 1)
        self._batch_tokens = batch_tokens
        self._lock = threading.Lock()
        self.last_used = time.monotonic()
        self.facts = ModelFacts(kind="embedding", context_length=self.context_length,
                                slots=1, n_vocab=llama.llama_vocab_n_tokens(self._vocab),
                                n_ctx_train=llama.llama_model_n_ctx_train(self._model),
                                embedding_dimensions=self.dimensions)

    def _new_context(self, batch_tokens: int, threads: int) -> llama.llama_context_p:
        params = llama.llama_context_default_params()
        params.n_ctx = batch_tokens
        params.n_batch = params.n_ubatch = batch_tokens  # non-causal: a whole input per ubatch
        params.n_seq_max = self._max_seqs
        params.n_threads = params.n_threads_batch = threads
        params.embeddings = True
        params.kv_unified = True
        params.no_perf = True
        ctx = llama.llama_init_from_model(self._model, params)
        if not ctx:
            llama.llama_model_free(self._model)
            raise EngineError("llama.cpp could not create an embedding context")
        return ctx

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return tokenize(self._vocab, text, add_special=add_special)

    def embed(self, inputs: list[str] | list[list[int]]) -> Embeddings:
        """Embed texts, or token-id arrays in this model's own vocabulary."""
        if not inputs:
            raise InvalidInputError("input must not be empty", param="input")
        tokenized = [self.tokenize(item) if isinstance(item, str) else self._checked_ids(item)
                     for item in inputs]
        for index, tokens in enumerate(tokenized):
            if len(tokens) > self.context_length:
                raise ContextLengthError(
                    f"input {index} has {len(tokens)} tokens; this embedding model takes at "
                    f"most {self.context_length}", param="input")
        vectors: list[np.ndarray] = []
        with self._lock:
            for group in self._groups(tokenized):
                vectors.extend(self._embed_group(group))
            self.last_used = time.monotonic()
        return Embeddings(vectors, sum(len(tokens) for tokens in tokenized))

    def _checked_ids(self, tokens: list[int]) -> list[int]:
        n_vocab = llama.llama_vocab_n_tokens(self._vocab)
        if not tokens or any(not 0 <= token < n_vocab for token in tokens):
            raise InvalidInputError(f"token ids must be between 0 and {n_vocab - 1}",
                                    param="input")
        return list(tokens)

    def _groups(self, tokenized: list[list[int]]) -> list[list[list[int]]]:
        """Split inputs into batches that fit ``batch_tokens`` and the sequence limit."""
        groups: list[list[list[int]]] = [[]]
        used = 0
        for tokens in tokenized:
            if groups[-1] and (used + len(tokens) > self._batch_tokens
                               or len(groups[-1]) >= self._max_seqs):
                groups.append([])
                used = 0
            groups[-1].append(tokens)
            used += len(tokens)
        return groups

    def _embed_group(self, group: list[list[int]]) -> list[np.ndarray]:
        batch = self._batch
        n = 0
        for seq_id, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.token[n], batch.pos[n] = token, pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq_id
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        llama.llama_memory_clear(llama.llama_get_memory(self._ctx), True)
        if llama.llama_decode(self._ctx, batch) != 0:
            raise EngineError("llama_decode failed while embedding")
        return [self._pooled(seq_id) for seq_id in range(len(group))]

    def _pooled(self, seq_id: int) -> np.ndarray:
        pointer = llama.llama_get_embeddings_seq(self._ctx, seq_id)
        if not pointer:
            raise EngineError("the model returned no pooled embedding (is it an embedding "
                              "model?)")
        vector = np.ctypeslib.as_array(pointer, shape=(self.dimensions,)).astype(np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def token_bytes(self, token: int) -> bytes:
        return token_piece(self._vocab, token, special=False)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def submit(self, request: GenerationRequest, sink: DeltaSink) -> RequestHandle:
        raise InvalidInputError("this is an embedding model: it cannot generate text (use "
                                "/v1/embeddings)", param="model")

    def load_adapter(self, key: str, path: Path) -> None:
        raise InvalidInputError("LoRA adapters apply to text models only", param="model")

    def stats(self) -> EngineStats:
        busy = int(self._lock.locked())  # an embed call holds the lock while it runs
        return EngineStats(total=UsageStats(running=busy), kv_capacity_tokens=0,
                           last_used=self.last_used)

    def close(self) -> None:
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)
        llama.llama_model_free(self._model)

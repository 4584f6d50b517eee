"""The llama.cpp backend: GGUF models on llama-cpp-python's low-level bindings.

    runner.py        one llama.cpp model + context: batched decode, samplers, logprobs, LoRA
    engine.py        LlamaCppEngine: the step loop on its own thread (the contract's Engine)
    scheduler.py     waiting/running queues, token budget, chunked prefill
    prefix_cache.py  which slot a request gets, to reuse a cached prompt prefix
    request.py       a request as the engine tracks it
    embedding.py     LlamaCppEmbedder: sentence embeddings, batched (also an Engine)
    grammar.py       structured output (JSON schema, regex) → GBNF
    capacity.py      KV bytes per slot, the default number of slots

Only ``runner``, ``embedding`` and ``grammar`` import llama-cpp-python.
"""

from __future__ import annotations

from deskai.engine.protocol import Engine, EngineOptions, ModelSpec


def create_engine(spec: ModelSpec, options: EngineOptions) -> Engine:
    """The backend's ``EngineFactory``: a generator or an embedder, by the model's kind."""
    if spec.kind == "embedding":
        from deskai.engine.llamacpp.embedding import LlamaCppEmbedder

        return LlamaCppEmbedder(spec.path, threads=options.threads)
    from deskai.engine.llamacpp.engine import LlamaCppEngine

    return LlamaCppEngine(spec.path, options)

"""The engine contract (``protocol``, ``types``, ``sampling``) and its backends.

Everything outside ``engine/`` imports from here or from those three modules; only the runtime's
backend table names a backend package (``engine.llamacpp``).
"""

from deskai.engine.protocol import (
    Engine,
    EngineFactory,
    EngineOptions,
    GenerationRequest,
    ModelSpec,
    RequestHandle,
    generate,
)
from deskai.engine.sampling import BOUNDS, SamplingParams, StructuredOutput
from deskai.engine.types import (
    Delta,
    DeltaSink,
    Embeddings,
    EngineStats,
    FinishReason,
    ModelFacts,
    ModelKind,
    TokenLogprobs,
    UsageStats,
)

__all__ = [
    "BOUNDS", "Delta", "DeltaSink", "Embeddings", "Engine", "EngineFactory", "EngineOptions",
    "EngineStats", "FinishReason", "GenerationRequest", "ModelFacts", "ModelKind", "ModelSpec",
    "RequestHandle", "SamplingParams", "StructuredOutput", "TokenLogprobs", "UsageStats",
    "generate",
]

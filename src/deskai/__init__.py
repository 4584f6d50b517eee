"""deskai: the software of a personal AI supercomputer.

Know what your hardware can run, keep models in an offline store, and serve them through the
OpenAI API with llama.cpp underneath.
"""

from __future__ import annotations

__version__ = "0.1.0"

from deskai.errors import (  # noqa: E402
    ContextLengthError,
    DeskaiError,
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
)
from deskai.store import Manifest, Store  # noqa: E402

__all__ = [
    "ContextLengthError",
    "DeskaiError",
    "InvalidInputError",
    "Manifest",
    "ModelNotFoundError",
    "NotFoundError",
    "Store",
    "__version__",
]

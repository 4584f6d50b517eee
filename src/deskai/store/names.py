"""Model names: ``[namespace/...]name[:tag]``, validated so no name can escape the store.

A bare name means ``:latest``, as in Ollama. Every path segment and the tag are restricted to
letters, digits, ``.``, ``_`` and ``-`` and may not start with a dot, so ``..``, absolute paths,
empty segments and control characters are all refused before any file is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from deskai.errors import InvalidModelNameError

DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 200
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,79}")


@dataclass(frozen=True, slots=True)
class ModelName:
    """A validated model reference; ``str()`` gives the canonical ``path:tag`` form."""

    path: str
    tag: str = DEFAULT_TAG

    def __str__(self) -> str:
        return f"{self.path}:{self.tag}"

    @property
    def filename(self) -> str:
        """A flat, reversible file name for the manifest (``/`` and ``:`` percent-encoded)."""
        return quote(str(self), safe="") + ".json"

    @classmethod
    def from_filename(cls, filename: str) -> ModelName:
        return parse_model_name(unquote(filename.removesuffix(".json")))


def parse_model_name(text: str) -> ModelName:
    """Parse and validate a model name; raise ``InvalidModelNameError`` with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidModelNameError("invalid model name: it is empty", param="model")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidModelNameError(
            f"invalid model name: longer than {MAX_NAME_LENGTH} characters", param="model"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidModelNameError("invalid model name: it contains control characters",
                                    param="model")
    path, sep, tag = text.rpartition(":") if ":" in text else (text, "", DEFAULT_TAG)
    if sep and "/" in tag:
        raise InvalidModelNameError(f"invalid model name {text!r}: a tag cannot hold '/'",
                                    param="model")
    if path.startswith("/"):
        raise InvalidModelNameError(f"invalid model name {text!r}: absolute paths are not names",
                                    param="model")
    for segment in path.split("/"):
        _check_segment(text, segment)
    _check_segment(text, tag, what="tag")
    return ModelName(path=path, tag=tag)


def _check_segment(text: str, segment: str, what: str = "name segment") -> None:
    if segment in {"", ".", ".."} or not _SEGMENT.fullmatch(segment):
        raise InvalidModelNameError(
            f"invalid model name {text!r}: {what} {segment!r} must be 1-80 letters, digits, "
            "'.', '_' or '-', not starting with '.' or '-'",
            param="model",
        )

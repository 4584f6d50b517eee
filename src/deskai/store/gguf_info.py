"""What a GGUF file says about itself, read from its header (``gguf_header``).

Only the header (metadata and tensor descriptors) is parsed, and the tokenizer's tables in it
are stepped over; the weights are never read, so this is fast on a 100 GB file and on a
262,144-token vocabulary. It also refuses files that are not GGUF, are truncated, or have a
header that does not parse, with a one-line reason.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

from deskai.store.gguf_header import (
    TOKENIZER_TABLES,
    GGUFHeader,
    GGUFTensor,
    read_gguf_header,
)

# architectures that embed text rather than generate it (BERT-style encoders)
EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2",
                                     "jina-bert-v3", "modern-bert", "neo-bert", "t5encoder"})


def model_kind(architecture: str | None) -> Literal["text", "embedding"]:
    """What a model of this GGUF architecture does: generate text, or embed it."""
    return "embedding" if architecture in EMBEDDING_ARCHITECTURES else "text"


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """The facts ``deskai show`` prints and the engine and planner rely on."""

    architecture: str
    name: str | None
    parameter_count: int
    quantization: str
    context_length: int | None
    file_size: int
    tensor_count: int
    has_chat_template: bool
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None

    def to_dict(self, *, with_template: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_template:
            data.pop("chat_template")
        return data


def read_gguf_info(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse a GGUF header; raise ``InvalidModelFileError`` if the file is not a whole GGUF."""
    header = read_gguf_header(path)
    fields = header.fields
    arch = str(fields.get("general.architecture") or "unknown")
    template = fields.get("tokenizer.chat_template")
    return GGUFInfo(
        architecture=arch,
        name=_str_or_none(fields.get("general.name")),
        parameter_count=sum(t.n_elements for t in header.tensors),
        quantization=_quantization_name(fields.get("general.file_type"), header.tensors),
        context_length=_int_or_none(fields.get(f"{arch}.context_length")),
        file_size=header.file_size,
        tensor_count=len(header.tensors),
        has_chat_template=bool(template),
        chat_template=str(template) if template else None,
        bos_token=_token_text(header, fields.get("tokenizer.ggml.bos_token_id")),
        eos_token=_token_text(header, fields.get("tokenizer.ggml.eos_token_id")),
    )


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every metadata field of a GGUF header but the tokenizer's tables (a vocabulary is 100k+
    strings). Other arrays come whole however long (``array`` reads one the header walk
    stepped over; no real model has one): /api/show decides which to print."""
    header = read_gguf_header(path)
    return {key: header.array(key) if key in header.arrays else value
            for key, value in header.fields.items() if not key.startswith(TOKENIZER_TABLES)}


def _quantization_name(file_type: Any, tensors: list[GGUFTensor]) -> str:
    from gguf import LlamaFileType

    if file_type is not None:
        try:
            return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except (TypeError, ValueError):
            pass
    # No (known) file type recorded: name the most common tensor type instead.
    counts: dict[str, int] = {}
    for tensor in tensors:
        counts[tensor.type_name] = counts.get(tensor.type_name, 0) + tensor.n_elements
    return max(counts, key=counts.__getitem__) if counts else "unknown"


def _token_text(header: GGUFHeader, token_id: Any) -> str | None:
    """The text of one token, read alone: the vocabulary is never built for two strings."""
    tokens = header.arrays.get("tokenizer.ggml.tokens")
    if token_id is None or tokens is None:
        return None
    index = int(token_id)
    if not 0 <= index < tokens.length:
        return None
    text = header.array_item("tokenizer.ggml.tokens", index)
    return text if isinstance(text, str) else None


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def _str_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None

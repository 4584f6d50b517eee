"""What a GGUF file says about itself, read from its header with the ``gguf`` package.

Only the header (metadata and tensor descriptors) is parsed; the weights are never read, so
this is fast on a 100 GB file. It also refuses files that are not GGUF, are truncated, or have
a header that does not parse, with a one-line reason.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from deskai.errors import InvalidModelFileError

GGUF_MAGIC = b"GGUF"
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
    file_path = Path(path)
    _check_magic(file_path)
    reader = _open_reader(file_path)
    file_size = file_path.stat().st_size
    _check_not_truncated(reader, file_size, file_path)
    fields = {name: _field_value(field) for name, field in reader.fields.items()
              if not name.startswith("tokenizer.ggml.") or name in _TOKEN_ID_FIELDS}
    arch = str(fields.get("general.architecture") or "unknown")
    template = fields.get("tokenizer.chat_template")
    return GGUFInfo(
        architecture=arch,
        name=_str_or_none(fields.get("general.name")),
        parameter_count=sum(int(t.n_elements) for t in reader.tensors),
        quantization=_quantization_name(fields.get("general.file_type"), reader),
        context_length=_int_or_none(fields.get(f"{arch}.context_length")),
        file_size=file_size,
        tensor_count=len(reader.tensors),
        has_chat_template=bool(template),
        chat_template=str(template) if template else None,
        bos_token=_token_text(reader, fields.get("tokenizer.ggml.bos_token_id")),
        eos_token=_token_text(reader, fields.get("tokenizer.ggml.eos_token_id")),
    )


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every scalar metadata field of a GGUF header (token tables left out: they are huge)."""
    reader = _open_reader(Path(path))
    return {name: _field_value(field) for name, field in reader.fields.items()
            if not name.startswith("tokenizer.ggml.") and not name.startswith("GGUF.")}


_TOKEN_ID_FIELDS = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}


def _check_magic(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise InvalidModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidModelFileError(f"{path}: is a directory, not a GGUF file") from None
    except OSError as exc:
        raise InvalidModelFileError(f"{path}: cannot be read ({exc.strerror})") from None
    if magic != GGUF_MAGIC:
        raise InvalidModelFileError(f"{path}: not a GGUF file (bad magic {magic!r})")


def _open_reader(path: Path) -> Any:
    from gguf import GGUFReader

    try:
        return GGUFReader(path, "r")
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidModelFileError(
            f"{path}: corrupt or truncated GGUF header ({reason})") from None


def _check_not_truncated(reader: Any, file_size: int, path: Path) -> None:
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > file_size:
            raise InvalidModelFileError(
                f"{path}: truncated: tensor {tensor.name!r} ends at byte {end:,} "
                f"but the file has {file_size:,} bytes"
            )


def _field_value(field: Any) -> Any:
    try:
        return field.contents()
    except Exception:  # unusual field types: keep going, the field is informational
        return None


def _quantization_name(file_type: Any, reader: Any) -> str:
    from gguf import GGMLQuantizationType, LlamaFileType

    if file_type is not None:
        try:
            return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    # No file type recorded: name the most common tensor type instead.
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        kind = GGMLQuantizationType(tensor.tensor_type).name
        counts[kind] = counts.get(kind, 0) + int(tensor.n_elements)
    return max(counts, key=counts.__getitem__) if counts else "unknown"


def _token_text(reader: Any, token_id: Any) -> str | None:
    if token_id is None:
        return None
    field = reader.fields.get("tokenizer.ggml.tokens")
    if field is None:
        return None
    index = int(token_id)
    if not 0 <= index < len(field.data):
        return None
    part = field.parts[field.data[index]]
    return bytes(part).decode("utf-8", errors="replace")


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def _str_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None

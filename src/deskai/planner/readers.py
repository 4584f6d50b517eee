"""Architectures from files: a GGUF header, a Hugging Face ``config.json``, or a store name.

Only the GGUF header is read (walked with ``struct`` over a memory map; tensor data is never
touched, tokenizer tables are stepped over), so a 100 GB file answers as fast as a small one.
The tensors' exact byte sizes come along, so a fit for that file uses the bytes on disk rather
than an average bits-per-weight.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from deskai.errors import InvalidModelFileError, UnknownArchitectureError
from deskai.planner.architectures import (
    Architecture,
    find_catalog_model,
    unknown_model_message,
)

#: Families whose GGUF does not record the sliding-window layer pattern; llama.cpp hardcodes
#: these (src/llama-model.cpp: gemma3 every 6th layer global, gemma2 / gpt-oss alternate).
SWA_PATTERN_BY_FAMILY: dict[str, int] = {"gemma3": 6, "gemma2": 2, "gpt-oss": 2,
                                         "gemma3n": 5, "cohere2": 4}

#: GGML tensor types llama.cpp's CPU backend repacks into an interleaved copy (CPU_REPACK).
CPU_REPACKED_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A GGUF file's architecture plus what its tensors weigh on disk, by GGML type."""

    architecture: Architecture
    path: Path
    bytes_by_type: dict[str, int]
    embedding_bytes: int  # token_embd.weight (read one row per token)
    file_type: str | None = None  # general.file_type as llama.cpp names it, e.g. "q4_k_m"

    @property
    def weight_bytes(self) -> int:
        return sum(self.bytes_by_type.values())

    @property
    def cpu_repacked_bytes(self) -> int:
        return sum(n for t, n in self.bytes_by_type.items() if t in CPU_REPACKED_TYPES)

    @property
    def quantization(self) -> str:
        """The file's declared type (``q4_k_m``), else the type holding most bytes."""
        if self.file_type:
            return self.file_type
        return max(self.bytes_by_type, key=self.bytes_by_type.__getitem__).lower()


def read_gguf(path: str | os.PathLike[str]) -> ModelFile:
    """The architecture in a GGUF header; ``InvalidModelFileError`` if it is not GGUF."""
    file_path = Path(path)
    try:
        header = _read_header(file_path)
    except (ValueError, OSError) as exc:
        raise InvalidModelFileError(f"{file_path}: not a readable GGUF file ({exc})") from exc
    bytes_by_type: dict[str, int] = {}
    for tensor in header.tensors:
        bytes_by_type[tensor.type_name] = bytes_by_type.get(tensor.type_name, 0) + tensor.n_bytes
    embedding = next((t.n_bytes for t in header.tensors if t.name == "token_embd.weight"), 0)
    tied = not any(t.name == "output.weight" for t in header.tensors)
    arch = architecture_from_gguf_fields(header.fields, vocab=_vocab_size(header), tied=tied,
                                         name=file_path.name)
    return ModelFile(arch, file_path, bytes_by_type, embedding,
                     _file_type_name(header.fields.get("general.file_type")))


def _file_type_name(value: Any) -> str | None:
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_").lower()
    except (TypeError, ValueError):
        return None


def _vocab_size(header: _Header) -> int:
    fields = header.fields
    arch = fields.get("general.architecture")
    if f"{arch}.vocab_size" in fields:
        return int(fields[f"{arch}.vocab_size"])
    if "tokenizer.ggml.tokens" in header.array_lengths:
        return header.array_lengths["tokenizer.ggml.tokens"]
    for tensor in header.tensors:
        if tensor.name == "token_embd.weight" and tensor.dims:
            return tensor.dims[-1]
    return 0


# The GGUF header, parsed by hand. gguf.GGUFReader turns every value into numpy objects, the
# 262,144 vocabulary strings of a Gemma included: seconds per file. The planner runs before
# every model load and needs only the hyperparameters and the tensor descriptors, so this
# walks the header itself and steps over the tokenizer's tables without building them.
# Layout (versions 2 and 3): magic, version u32, tensor count u64, key/value count u64, the
# key/values, the tensor descriptors, then the aligned tensor data.

#: Keys holding the tokenizer's tables (vocabulary, scores, merges): walked past, never kept.
_TOKENIZER_TABLES = "tokenizer.ggml."
#: Longer arrays are tables, not hyperparameters (per-layer lists have one entry per layer).
_MAX_KEPT_ARRAY = 65_536
#: The header layouts this parser implements (version 1 had 32-bit counts).
_VERSIONS = (2, 3)
#: Longer strings mean a corrupt length (whole tokenizer.json blobs are a few MB): refusing
#: them keeps a bad byte in a 100 GB file from becoming a 100 GB copy.
_MAX_STRING = 1 << 28


@dataclass(frozen=True, slots=True)
class _Tensor:
    """One tensor descriptor; its data is never read."""

    name: str
    dims: tuple[int, ...]  # GGML order: dims[0] is the row length, dims[-1] the row count
    type_name: str  # a gguf.GGMLQuantizationType name, e.g. "Q4_K"
    n_bytes: int
    offset: int  # from the start of the data section


@dataclass(frozen=True, slots=True)
class _Header:
    fields: dict[str, Any]  # keys outside tokenizer.ggml.*, as plain Python values
    array_lengths: dict[str, int]  # every array's element count, kept or walked past
    tensors: list[_Tensor]


class _Cursor:
    """A read position in the mapped file; every read checks the end (truncated files)."""

    def __init__(self, data: mmap.mmap, order: str) -> None:
        self.data, self.order, self.pos = data, order, 0

    def skip(self, size: int) -> int:
        """Step over ``size`` bytes; return where they start."""
        start, self.pos = self.pos, self.pos + size
        if self.pos > len(self.data):
            raise ValueError(f"header ends early: it needs byte {self.pos:,} but the file "
                             f"has {len(self.data):,}")
        return start

    def values(self, fmt: str, count: int = 1) -> tuple[Any, ...]:
        # the bounds check comes first, so a corrupt count cannot build a giant format
        start = self.skip(count * struct.calcsize(self.order + fmt))
        return struct.unpack_from(f"{self.order}{count}{fmt}", self.data, start)

    def u32(self) -> int:
        return int(self.values("I")[0])

    def u64(self) -> int:
        return int(self.values("Q")[0])

    def raw_string(self) -> bytes:
        size = self.u64()
        if size > _MAX_STRING:
            raise ValueError(f"a string of {size:,} bytes at byte {self.pos:,}: corrupt header")
        start = self.skip(size)
        return self.data[start:self.pos]

    def skip_strings(self, count: int) -> None:
        """Step over ``count`` strings reading only their lengths (a vocabulary: 100k+)."""
        data, pos = self.data, self.pos
        length = struct.Struct(self.order + "Q").unpack_from
        try:
            for _ in range(count):
                pos += 8 + length(data, pos)[0]
        except (struct.error, OverflowError):  # a length ran past the end of the file
            raise ValueError("header ends inside a string array") from None
        self.skip(pos - self.pos)  # the last string's bytes must be in the file too


def _read_header(path: Path) -> _Header:
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0,
                                               access=mmap.ACCESS_READ) as data:
        return _parse_header(data)


def _parse_header(data: mmap.mmap) -> _Header:
    from gguf import GGUF_MAGIC

    magic = data[:4]
    if magic != GGUF_MAGIC.to_bytes(4, "little"):
        raise ValueError(f"bad magic {magic!r}")
    cursor = _Cursor(data, _byte_order(data))
    cursor.skip(4)
    version = cursor.u32()
    if version not in _VERSIONS:
        raise ValueError(f"GGUF version {version} is not supported")
    tensor_count, kv_count = cursor.values("Q", 2)
    fields, array_lengths = _read_fields(cursor, kv_count)
    tensors = _read_tensors(cursor, tensor_count)
    _check_data_section(cursor, fields, tensors)
    return _Header(fields, array_lengths, tensors)


def _byte_order(data: mmap.mmap) -> str:
    """``>`` for a big-endian file: its small version number reads as a multiple of 2**16."""
    if len(data) < 8:
        raise ValueError("too short for a GGUF header")
    (version,) = struct.unpack_from("<I", data, 4)
    return ">" if version & 0xFFFF == 0 else "<"


def _read_fields(cursor: _Cursor, count: int) -> tuple[dict[str, Any], dict[str, int]]:
    from gguf import GGUFValueType

    fields: dict[str, Any] = {}
    array_lengths: dict[str, int] = {}
    seen: set[str] = set()
    for _ in range(count):
        key = cursor.raw_string().decode("utf-8")
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen.add(key)
        kind = GGUFValueType(cursor.u32())
        if key == "general.alignment" and kind != GGUFValueType.UINT32:
            raise ValueError("general.alignment is not a u32")  # llama.cpp refuses it too
        keep = not key.startswith(_TOKENIZER_TABLES)
        if kind == GGUFValueType.ARRAY:
            item_kind, length = GGUFValueType(cursor.u32()), cursor.u64()
            array_lengths[key] = length
            value = _read_array(cursor, item_kind, length, keep and length <= _MAX_KEPT_ARRAY)
        else:
            value = _read_scalar(cursor, kind)
        if keep:
            fields[key] = value
    return fields, array_lengths


def _read_scalar(cursor: _Cursor, kind: int) -> Any:
    from gguf import GGUFValueType

    if kind == GGUFValueType.STRING:
        return _text(cursor.raw_string())
    return cursor.values(_scalar_format(kind))[0]


def _read_array(cursor: _Cursor, kind: int, length: int, keep: bool) -> list[Any] | None:
    """An array's elements as a list, or None once stepped over (``keep`` false)."""
    from gguf import GGUFValueType

    if kind == GGUFValueType.ARRAY:  # llama.cpp refuses arrays of arrays as well
        raise ValueError("arrays of arrays are not supported")
    if kind == GGUFValueType.STRING:
        if not keep:
            cursor.skip_strings(length)
            return None
        texts = [_text(cursor.raw_string()) for _ in range(length)]
        return None if None in texts else texts
    fmt = _scalar_format(kind)
    if not keep:
        cursor.skip(length * struct.calcsize(cursor.order + fmt))
        return None
    return list(cursor.values(fmt, length))


def _text(raw: bytes) -> str | None:
    """A string value; None if it is not UTF-8 (an odd field is skipped, not fatal)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _scalar_format(kind: int) -> str:
    """The ``struct`` code of a GGUF scalar type; a type newer than this parser is an error."""
    fmt = _scalar_formats().get(kind)
    if fmt is None:
        raise ValueError(f"unsupported GGUF value type {kind}")
    return fmt


@cache
def _scalar_formats() -> dict[int, str]:
    # built on first use: importing gguf takes ~0.1 s, and the planner imports this module
    from gguf import GGUFValueType as T

    return {T.UINT8: "B", T.INT8: "b", T.UINT16: "H", T.INT16: "h", T.UINT32: "I",
            T.INT32: "i", T.UINT64: "Q", T.INT64: "q", T.FLOAT32: "f", T.FLOAT64: "d",
            T.BOOL: "?"}


def _read_tensors(cursor: _Cursor, count: int) -> list[_Tensor]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    tensors: list[_Tensor] = []
    names: set[str] = set()
    for _ in range(count):
        name = cursor.raw_string().decode("utf-8")
        if name in names:
            raise ValueError(f"duplicate tensor {name!r}")
        names.add(name)
        dims = tuple(int(d) for d in cursor.values("Q", cursor.u32()))
        kind = GGMLQuantizationType(cursor.u32())
        offset = cursor.u64()
        if kind not in GGML_QUANT_SIZES:
            raise ValueError(f"tensor {name!r} has type {kind.name} of unknown size")
        block_size, type_size = GGML_QUANT_SIZES[kind]
        if dims and dims[0] % block_size:  # a row must be whole blocks, or sizes are wrong
            raise ValueError(f"tensor {name!r}: row of {dims[0]} is not a multiple of the "
                             f"{kind.name} block size {block_size}")
        n_bytes = math.prod(dims) * type_size // block_size
        tensors.append(_Tensor(name, dims, kind.name, n_bytes, offset))
    return tensors


def _check_data_section(cursor: _Cursor, fields: dict[str, Any],
                        tensors: list[_Tensor]) -> None:
    """Every tensor must lie inside the file: a cut-off download is refused here."""
    from gguf import GGUF_DEFAULT_ALIGNMENT

    alignment = fields.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not alignment or alignment & (alignment - 1):
        raise ValueError(f"alignment {alignment} is not a power of two")
    start = -(-cursor.pos // alignment) * alignment  # the data section is aligned
    size = len(cursor.data)
    for tensor in tensors:
        end = start + tensor.offset + tensor.n_bytes
        if end > size:
            raise ValueError(f"truncated: tensor {tensor.name!r} ends at byte {end:,} "
                             f"but the file has {size:,}")


def _per_layer(value: Any) -> int:
    """GGUF stores some hyperparameters per layer (a list); the planner takes the largest."""
    if isinstance(value, list):
        return int(max(value)) if value else 0
    return int(value or 0)


def architecture_from_gguf_fields(fields: dict[str, Any], *, vocab: int, tied: bool,
                                  name: str) -> Architecture:
    """Map llama.cpp's ``{arch}.*`` metadata keys onto an ``Architecture``."""
    family = str(fields.get("general.architecture") or "")
    if not family:
        raise InvalidModelFileError(f"{name}: GGUF header has no general.architecture")

    def get(key: str, default: Any = 0) -> Any:
        value = fields.get(f"{family}.{key}")
        return default if value is None else value

    hidden = int(get("embedding_length"))
    heads = _per_layer(get("attention.head_count"))
    if not hidden or not heads:
        raise UnknownArchitectureError(
            f"{name}: GGUF architecture {family!r} has no attention heads the planner can use")
    head_dim = int(get("attention.key_length", 0)) or hidden // heads
    kv_heads = _per_layer(get("attention.head_count_kv", heads)) or heads
    window = int(get("attention.sliding_window", 0))
    pattern = int(get("attention.sliding_window_pattern", 0) or 0) or SWA_PATTERN_BY_FAMILY.get(
        family, 0)
    return Architecture(
        name=str(fields.get("general.name") or name), family=family,
        layers=int(get("block_count")), hidden=hidden, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, ffn=_per_layer(get("feed_forward_length")), vocab=vocab,
        context=int(get("context_length", 4096)), tied=tied,
        experts=int(get("expert_count", 0)), active_experts=int(get("expert_used_count", 0)),
        shared_experts=int(get("expert_shared_count", 0)),
        expert_ffn=int(get("expert_feed_forward_length", 0)),
        dense_layers=int(get("leading_dense_block_count", 0)),
        sliding_window=window if pattern else 0, swa_pattern=pattern if window else 0,
        kv_lora_rank=int(get("attention.kv_lora_rank", 0)),
        q_lora_rank=int(get("attention.q_lora_rank", 0)),
        qk_rope_dim=int(get("rope.dimension_count", 0)) if get("attention.kv_lora_rank", 0)
        else 0,
        qk_nope_dim=(head_dim - int(get("rope.dimension_count", 0))
                     if get("attention.kv_lora_rank", 0) else 0),
        v_head_dim=int(get("attention.value_length", 0)) if get("attention.kv_lora_rank", 0)
        else 0,
        source=f"GGUF header of {name}",
    )


def read_hf_config(path: str | os.PathLike[str]) -> Architecture:
    """The architecture in a Hugging Face ``config.json`` (a file or the directory holding it)."""
    file_path = Path(path)
    if file_path.is_dir():
        file_path = file_path / "config.json"
    try:
        config = json.loads(file_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModelFileError(f"{file_path}: not a readable config.json ({exc})") from exc
    if not isinstance(config, dict):
        raise InvalidModelFileError(f"{file_path}: config.json is not a JSON object")
    return architecture_from_hf_config(config, name=file_path.parent.name or "config")


#: The hyperparameters every config must give, by transformers' names: most families use the
#: first; GPT-2 and the configs modelled on it (GPT-J, CodeGen, BLOOM...) the second.
_HF_REQUIRED: dict[str, tuple[str, ...]] = {
    "hidden": ("hidden_size", "n_embd"),
    "heads": ("num_attention_heads", "n_head"),
    "layers": ("num_hidden_layers", "n_layer"),
    "vocab": ("vocab_size",),
}


def _hf_required(config: dict[str, Any], name: str) -> dict[str, int]:
    """The required hyperparameters as positive ints; a one-line error names any missing."""
    found = {field: next((config[k] for k in keys if config.get(k) is not None), None)
             for field, keys in _HF_REQUIRED.items()}
    missing = [_hf_key_names(field) for field, value in found.items() if value is None]
    if missing:
        raise UnknownArchitectureError(
            f"{name}: config.json has no {', '.join(missing)}, which the planner needs")
    return {field: _positive_int(value, _hf_key_names(field), name)
            for field, value in found.items()}


def _hf_key_names(field: str) -> str:
    """``hidden_size (or n_embd)``: a field's keys as an error message names them."""
    first, *others = _HF_REQUIRED[field]
    return first + "".join(f" (or {other})" for other in others)


def _positive_int(value: Any, key: str, name: str) -> int:
    """``value`` as a positive int; a hand-edited "768", 0 or true is refused by key."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 \
            and float(value).is_integer():
        return int(value)
    raise InvalidModelFileError(
        f"{name}: config.json's {key} must be a positive integer, got {value!r}")


def architecture_from_hf_config(config: dict[str, Any], *, name: str) -> Architecture:
    """Map transformers' config keys (Llama, Qwen, Gemma, Mistral, DeepSeek, gpt-oss, GPT-2...).

    A config without the shapes the planner needs raises ``UnknownArchitectureError`` naming
    the missing keys.
    """
    text = config.get("text_config") or config  # multimodal configs nest the decoder
    required = _hf_required(text, name)
    hidden, heads = required["hidden"], required["heads"]
    head_dim = int(text.get("head_dim") or hidden // heads)
    window = int(text.get("sliding_window") or 0)
    pattern = _hf_swa_pattern(text)
    experts = int(text.get("num_local_experts") or text.get("n_routed_experts")
                  or text.get("num_experts") or 0)
    model_type = str(text.get("model_type", ""))
    return Architecture(
        name=str(text.get("_name_or_path") or name), family=model_type,
        layers=required["layers"], hidden=hidden, heads=heads,
        kv_heads=int(text.get("num_key_value_heads") or heads), head_dim=head_dim,
        ffn=int(text.get("intermediate_size") or text.get("n_inner") or 4 * hidden),
        vocab=required["vocab"],
        context=int(text.get("max_position_embeddings") or text.get("n_positions")
                    or text.get("n_ctx") or 4096),
        # GPT2Config keeps transformers' default (tied), so its config.json omits the key
        tied=bool(text.get("tie_word_embeddings", model_type == "gpt2")),
        qkv_bias=bool(text.get("attention_bias", False)),
        experts=experts,
        active_experts=int(text.get("num_experts_per_tok") or text.get("experts_per_token")
                           or 0) if experts else 0,
        shared_experts=int(text.get("n_shared_experts") or 0),
        expert_ffn=int(text.get("moe_intermediate_size") or text.get("intermediate_size") or 0)
        if experts else 0,
        dense_layers=int(text.get("first_k_dense_replace") or 0),
        sliding_window=window if pattern else 0, swa_pattern=pattern if window else 0,
        kv_lora_rank=int(text.get("kv_lora_rank") or 0),
        q_lora_rank=int(text.get("q_lora_rank") or 0),
        qk_rope_dim=int(text.get("qk_rope_head_dim") or 0),
        qk_nope_dim=int(text.get("qk_nope_head_dim") or 0),
        v_head_dim=int(text.get("v_head_dim") or 0),
        source=f"config.json of {name}",
    )


def _hf_swa_pattern(config: dict[str, Any]) -> int:
    """Every how-many layers one is global: from ``layer_types`` or ``sliding_window_pattern``."""
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and "full_attention" in layer_types:
        first_full = layer_types.index("full_attention")
        return first_full + 1 if any(t != "full_attention" for t in layer_types) else 0
    if config.get("sliding_window_pattern"):
        return int(config["sliding_window_pattern"])
    if config.get("use_sliding_window") is False:
        return 0
    # Mistral-style configs with sliding_window on every layer: a pattern of "never global"
    # would need its own flag; llama.cpp treats them as full attention, and so do we.
    return 0


def load_model(name: str) -> Architecture | ModelFile:
    """Resolve what the user typed: a .gguf file, a config.json, a catalog name, a store name."""
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or (path.is_file() and _is_gguf(path)):
        if not path.is_file():
            raise UnknownArchitectureError(f"no such GGUF file: {name}")
        return read_gguf(path)
    if path.name == "config.json" or (path.is_dir() and (path / "config.json").is_file()):
        return read_hf_config(path)
    found = find_catalog_model(name)
    if found is not None:
        return found
    stored = _store_path(name)
    if stored is not None:
        return read_gguf(stored)
    raise UnknownArchitectureError(unknown_model_message(name))


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"GGUF"


def _store_path(name: str) -> Path | None:
    """The store's GGUF for ``name``, or None: the planner works without a store or engine."""
    try:
        from deskai.errors import DeskaiError
        from deskai.store import Store
    except ImportError:
        return None
    try:
        store = Store()
        try:
            from deskai.store import resolve_model_path

            return resolve_model_path(store, name)
        except ImportError:
            return store.resolve(name)
    except (DeskaiError, OSError):
        return None

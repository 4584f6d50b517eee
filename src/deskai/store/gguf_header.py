"""A GGUF file's header, walked with ``struct`` over a memory map: key/values and tensors.

gguf.GGUFReader turns every value into numpy objects, the 262,144 vocabulary strings of a Gemma
included: seconds per file. `deskai show`, import, /api/show and the planner need the
hyperparameters, the tensor descriptors and at most a token or two, so this walks the header
itself and steps over the tokenizer's tables reading only their string lengths. A table's
elements are read from the file when asked for: one by index (``array_item``), or all of them
(``array``, slow for a vocabulary). Tensor data is never touched, so a 100 GB file answers as
fast as a small one.

Layout (versions 2 and 3): magic, version u32, tensor count u64, key/value count u64, the
key/values, the tensor descriptors, then the aligned tensor data.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from deskai.errors import InvalidModelFileError

#: Keys holding the tokenizer's tables (vocabulary, scores, merges): stepped over, never built.
TOKENIZER_TABLES = "tokenizer.ggml."
#: Longer arrays are tables, not hyperparameters (per-layer lists have one entry per layer).
_MAX_KEPT_ARRAY = 65_536
#: The header layouts this parser implements (version 1 had 32-bit counts).
_VERSIONS = (2, 3)
#: Longer strings mean a corrupt length (whole tokenizer.json blobs are a few MB): refusing
#: them keeps a bad byte in a 100 GB file from becoming a 100 GB copy.
_MAX_STRING = 1 << 28


@dataclass(frozen=True, slots=True)
class GGUFTensor:
    """One tensor descriptor; its data is never read."""

    name: str
    dims: tuple[int, ...]  # GGML order: dims[0] is the row length, dims[-1] the row count
    type_name: str  # a gguf.GGMLQuantizationType name, e.g. "Q4_K"
    n_bytes: int
    offset: int  # from the start of the data section

    @property
    def n_elements(self) -> int:
        return math.prod(self.dims)


@dataclass(frozen=True, slots=True)
class GGUFArray:
    """Where an array value lies in the file, so its elements can be read later."""

    item_type: int  # a gguf.GGUFValueType
    length: int
    offset: int  # byte offset of its first element
    stepped_over: bool  # not built at parse time: its value in ``fields`` is None


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    """A GGUF header as plain Python values, the tokenizer's tables left in the file.

    ``fields`` holds every key, in file order. A value is None for an array that was stepped
    over (``arrays[key].stepped_over``; ``array_item`` and ``array`` read it from the file
    again, a blob never changes) and for a string, or string array, that is not UTF-8: an odd
    field is skipped, not fatal, as ``gguf.GGUFReader``'s callers had it.
    """

    path: Path
    byte_order: str  # "<", or ">" for a big-endian file
    fields: dict[str, Any]
    arrays: dict[str, GGUFArray]  # every array value, built or stepped over
    tensors: list[GGUFTensor]
    data_offset: int  # where the (aligned) tensor data starts
    file_size: int

    def array_item(self, key: str, index: int) -> Any:
        """Element ``index`` of array ``key``, read from the file; a string array's earlier
        strings are stepped over by their lengths (a vocabulary's token ``i``, not the rest).

        Strings come back with undecodable bytes replaced: a token may hold part of a
        character. ``KeyError`` if ``key`` is no array, ``IndexError`` past its end.
        """
        from gguf import GGUFValueType

        array = self.arrays[key]
        if not 0 <= index < array.length:
            raise IndexError(f"{key}[{index}]: the array has {array.length:,} elements")
        with _mapped(self.path) as data:
            cursor = _Cursor(data, self.byte_order, array.offset)
            if array.item_type == GGUFValueType.STRING:
                cursor.skip_strings(index)
                return cursor.raw_string().decode("utf-8", errors="replace")
            fmt = _scalar_format(array.item_type)
            cursor.skip(index * struct.calcsize(self.byte_order + fmt))
            return cursor.values(fmt)[0]

    def array(self, key: str) -> list[Any] | None:
        """Every element of array ``key``, as ``fields`` would hold it, stepped over or not.

        Slow for a vocabulary (hundreds of thousands of strings are built): only for a caller
        that asked for the whole table. ``KeyError`` if ``key`` is no array.
        """
        array = self.arrays[key]
        if not array.stepped_over:
            return self.fields[key]
        with _mapped(self.path) as data:
            cursor = _Cursor(data, self.byte_order, array.offset)
            return _read_array(cursor, array.item_type, array.length, keep=True)


def read_gguf_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """The header of the GGUF at ``path``; ``InvalidModelFileError`` if it is not a whole GGUF
    (not GGUF, a header that does not parse, or tensors past the end of a cut-off file)."""
    file_path = Path(path)
    with _mapped(file_path) as data:
        return _parse_header(file_path, data)


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap]:
    """The file mapped read-only; any failure to read or parse it, inside the ``with`` too,
    becomes one ``InvalidModelFileError`` naming the file."""
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:  # mmap refuses empty files
                raise ValueError("the file is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield data
    except FileNotFoundError:
        raise _invalid(path, "no such file") from None
    except IsADirectoryError:
        raise _invalid(path, "it is a directory") from None
    except OSError as exc:
        raise _invalid(path, exc.strerror or str(exc)) from None
    except ValueError as exc:  # what the parser raises for anything malformed or truncated
        raise _invalid(path, str(exc)) from None


def _invalid(path: Path, reason: str) -> InvalidModelFileError:
    return InvalidModelFileError(f"{path}: not a readable GGUF file ({reason})")


class _Cursor:
    """A read position in the mapped file; every read checks the end (truncated files)."""

    def __init__(self, data: mmap.mmap, order: str, pos: int = 0) -> None:
        self.data, self.order, self.pos = data, order, pos

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


def _parse_header(path: Path, data: mmap.mmap) -> GGUFHeader:
    from gguf import GGUF_MAGIC

    if len(data) < 8:
        raise ValueError("too short for a GGUF header")
    magic = data[:4]
    if magic != GGUF_MAGIC.to_bytes(4, "little"):
        raise ValueError(f"bad magic {magic!r}")
    cursor = _Cursor(data, _byte_order(data), pos=4)
    version = cursor.u32()
    if version not in _VERSIONS:
        raise ValueError(f"GGUF version {version} is not supported")
    tensor_count, kv_count = cursor.values("Q", 2)
    fields, arrays = _read_fields(cursor, kv_count)
    tensors = _read_tensors(cursor, tensor_count)
    data_offset = _data_offset(cursor.pos, fields)
    _check_tensors_fit(tensors, data_offset, len(data))
    return GGUFHeader(path, cursor.order, fields, arrays, tensors, data_offset, len(data))


def _byte_order(data: mmap.mmap) -> str:
    """``>`` for a big-endian file: its small version number reads as a multiple of 2**16."""
    (version,) = struct.unpack_from("<I", data, 4)
    return ">" if version & 0xFFFF == 0 else "<"


def _read_fields(cursor: _Cursor, count: int) -> tuple[dict[str, Any], dict[str, GGUFArray]]:
    from gguf import GGUFValueType

    fields: dict[str, Any] = {}
    arrays: dict[str, GGUFArray] = {}
    for _ in range(count):
        key = cursor.raw_string().decode("utf-8")
        if key in fields:
            raise ValueError(f"duplicate key {key!r}")
        kind = GGUFValueType(cursor.u32())
        if key == "general.alignment" and kind != GGUFValueType.UINT32:
            raise ValueError("general.alignment is not a u32")  # llama.cpp refuses it too
        if kind == GGUFValueType.ARRAY:
            item_kind, length = GGUFValueType(cursor.u32()), cursor.u64()
            keep = not key.startswith(TOKENIZER_TABLES) and length <= _MAX_KEPT_ARRAY
            arrays[key] = GGUFArray(item_kind, length, cursor.pos, stepped_over=not keep)
            fields[key] = _read_array(cursor, item_kind, length, keep)
        else:
            fields[key] = _read_scalar(cursor, kind)
    return fields, arrays


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


def _read_tensors(cursor: _Cursor, count: int) -> list[GGUFTensor]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    tensors: list[GGUFTensor] = []
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
        tensors.append(GGUFTensor(name, dims, kind.name, n_bytes, offset))
    return tensors


def _data_offset(header_end: int, fields: dict[str, Any]) -> int:
    """Where the tensor data starts: the end of the header, rounded up to the alignment."""
    from gguf import GGUF_DEFAULT_ALIGNMENT

    alignment = fields.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not alignment or alignment & (alignment - 1):
        raise ValueError(f"alignment {alignment} is not a power of two")
    return -(-header_end // alignment) * alignment


def _check_tensors_fit(tensors: list[GGUFTensor], data_offset: int, size: int) -> None:
    """Every tensor must lie inside the file: a cut-off download is refused here."""
    for tensor in tensors:
        end = data_offset + tensor.offset + tensor.n_bytes
        if end > size:
            raise ValueError(f"truncated: tensor {tensor.name!r} ends at byte {end:,} "
                             f"but the file has {size:,}")

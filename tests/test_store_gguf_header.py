"""The store's GGUF header walk against ``gguf.GGUFReader``, the complete (slow) reader.

``read_gguf_info`` and ``read_gguf_metadata`` ran on GGUFReader until the header walk replaced
it (8 s for the bundled model's 262,144-token vocabulary): ``reference_info`` and
``reference_metadata`` are that code, kept here only, and the walk must give the same answers
field by field.
"""

from __future__ import annotations

import struct
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import (
    GGMLQuantizationType,
    GGUFEndian,
    GGUFReader,
    GGUFValueType,
    GGUFWriter,
    LlamaFileType,
)

from deskai.errors import InvalidModelFileError
from deskai.store import read_gguf_header, read_gguf_info, read_gguf_metadata

VOCAB = 300
HIDDEN = 64
TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
LONG = 70_000  # elements: longer than the walk builds, outside the tokenizer's tables


def write_gguf(path: Path, *, endianess: GGUFEndian = GGUFEndian.LITTLE, tied: bool = True,
               tokens: list[str | bytes] | None = None, bos: int | None = 1,
               eos: int | None = 2, file_type: LlamaFileType | None = LlamaFileType.MOSTLY_Q8_0,
               chat_template: str | None = None, odd: bool = False) -> Path:
    """A small llama GGUF with what real ones carry: per-layer lists, a vocabulary, quant types.

    ``odd`` adds what real files rarely hold: a string that is not UTF-8 and an array too long
    for the walk to build outside the tokenizer's tables.
    """
    writer = GGUFWriter(str(path), "llama", endianess=endianess)
    writer.add_name("tiny test model")
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(3)
    writer.add_head_count(4)
    writer.add_head_count_kv([1, 2, 2])  # per layer: the planner takes the largest
    writer.add_feed_forward_length([128, 256, 192])
    writer.add_layer_norm_rms_eps(1e-6)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_array("general.tags", ["tiny", "test", "ünïcode"])
    writer.add_bool("general.test_flag", True)
    if odd:
        writer.add_key_value("general.odd", b"\xffnot utf-8", GGUFValueType.STRING)
        writer.add_array("general.long", list(range(LONG)))
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    if tokens is None:
        tokens = [f"tok{i}" for i in range(VOCAB)]
    if tokens:
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([float(-i) for i in range(len(tokens))])
        writer.add_token_types([1] * len(tokens))
    if bos is not None:
        writer.add_bos_token_id(bos)
    if eos is not None:
        writer.add_eos_token_id(eos)
    q8_row = HIDDEN // 32 * 34  # Q8_0: 32 weights in 34 bytes
    writer.add_tensor("token_embd.weight", np.zeros((VOCAB, q8_row), np.uint8),
                      raw_dtype=GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(HIDDEN, np.float32))
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((128, HIDDEN), np.float16))
    if not tied:
        writer.add_tensor("output.weight", np.zeros((VOCAB, HIDDEN), np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- the GGUFReader-based reference: read_gguf_info / read_gguf_metadata as they were ----------

def _contents(field: Any) -> Any:
    try:
        return field.contents()
    except Exception:  # a string that is not UTF-8: the old code returned None
        return None


TOKEN_ID_FIELDS = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}


def reference_info(path: Path, reader: GGUFReader) -> dict[str, Any]:
    fields = {name: _contents(field) for name, field in reader.fields.items()
              if not name.startswith("tokenizer.ggml.") or name in TOKEN_ID_FIELDS}
    arch = str(fields.get("general.architecture") or "unknown")
    template = fields.get("tokenizer.chat_template")
    context = fields.get(f"{arch}.context_length")
    return {
        "architecture": arch,
        "name": None if fields.get("general.name") is None else str(fields["general.name"]),
        "parameter_count": sum(int(t.n_elements) for t in reader.tensors),
        "quantization": _reference_quantization(fields.get("general.file_type"), reader),
        "context_length": None if context is None else int(context),
        "file_size": path.stat().st_size,
        "tensor_count": len(reader.tensors),
        "has_chat_template": bool(template),
        "chat_template": str(template) if template else None,
        "bos_token": _reference_token(reader, fields.get("tokenizer.ggml.bos_token_id")),
        "eos_token": _reference_token(reader, fields.get("tokenizer.ggml.eos_token_id")),
    }


def _reference_quantization(file_type: Any, reader: GGUFReader) -> str:
    if file_type is not None:
        try:
            return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        kind = GGMLQuantizationType(tensor.tensor_type).name
        counts[kind] = counts.get(kind, 0) + int(tensor.n_elements)
    return max(counts, key=counts.__getitem__) if counts else "unknown"


def _reference_token(reader: GGUFReader, token_id: Any) -> str | None:
    field = reader.fields.get("tokenizer.ggml.tokens")
    if token_id is None or field is None or not 0 <= int(token_id) < len(field.data):
        return None
    return bytes(field.parts[field.data[int(token_id)]]).decode("utf-8", errors="replace")


def reference_metadata(reader: GGUFReader) -> dict[str, Any]:
    return {name: _contents(field) for name, field in reader.fields.items()
            if not name.startswith(("tokenizer.ggml.", "GGUF."))}


def assert_matches_reference(path: Path) -> GGUFReader:
    """Old and new agree on ``path``; the reader comes back for more checks (it is slow)."""
    reader = GGUFReader(path, "r")
    assert asdict(read_gguf_info(path)) == reference_info(path, reader)
    metadata, expected = read_gguf_metadata(path), reference_metadata(reader)
    assert metadata == expected
    assert list(metadata) == list(expected), "keys in file order, as /api/show lists them"
    return reader


# -- old vs new, field by field ------------------------------------------------------------------

CASES: dict[str, dict[str, Any]] = {
    "plain": {},
    "big-endian": {"endianess": GGUFEndian.BIG},
    "chat template, untied": {"chat_template": TEMPLATE, "tied": False},
    "no file type, no tokenizer": {"file_type": None, "tokens": [], "bos": None, "eos": None},
    "odd values": {"tokens": [*(f"tok{i}" for i in range(VOCAB - 1)), b"\xff</s>"],
                   "bos": VOCAB + 5, "eos": VOCAB - 1, "odd": True},
}


@pytest.mark.parametrize("case", CASES)
def test_info_and_metadata_match_gguf_reader(tmp_path: Path, case: str) -> None:
    assert_matches_reference(write_gguf(tmp_path / "tiny.gguf", **CASES[case]))


def test_odd_values_read_as_before(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "odd.gguf", **CASES["odd values"])
    info = read_gguf_info(path)
    assert info.bos_token is None, "an id past the vocabulary's end names no token"
    assert info.eos_token == "\ufffd</s>"
    metadata = read_gguf_metadata(path)
    assert metadata["general.odd"] is None
    assert metadata["general.long"] == list(range(LONG))


@pytest.mark.parametrize("case", ["plain", "big-endian", "odd values"])
def test_header_matches_gguf_reader(tmp_path: Path, case: str) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", **CASES[case])
    reader = GGUFReader(path, "r")
    header = read_gguf_header(path)
    expected = {name: _contents(field) for name, field in reader.fields.items()
                if not name.startswith("GGUF.")}
    assert list(header.fields) == list(expected)
    for key, value in header.fields.items():
        array = header.arrays.get(key)
        if array is not None and array.stepped_over:
            assert value is None, f"{key} is built on request only"
            assert header.array(key) == expected[key]
        else:
            assert value == expected[key], key
    for key, array in header.arrays.items():
        assert array.length == len(reader.fields[key].data), key
    assert header.data_offset == reader.data_offset
    assert header.file_size == path.stat().st_size
    assert [(t.name, t.dims, t.type_name, t.n_bytes, t.n_elements) for t in header.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_bytes),
         int(t.n_elements)) for t in reader.tensors]
    assert [header.data_offset + t.offset for t in header.tensors] == [
        int(t.data_offset) for t in reader.tensors]


def test_tokenizer_tables_are_stepped_over_and_read_by_index(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf")
    header = read_gguf_header(path)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        assert header.fields[key] is None and header.arrays[key].stepped_over
        assert header.arrays[key].length == VOCAB
    assert header.fields["tokenizer.ggml.bos_token_id"] == 1, "the tokenizer's scalars are read"
    tokens = GGUFReader(path, "r").fields["tokenizer.ggml.tokens"].contents()
    assert [header.array_item("tokenizer.ggml.tokens", i) for i in range(VOCAB)] == tokens
    assert header.array("tokenizer.ggml.tokens") == tokens
    assert header.array_item("tokenizer.ggml.scores", 7) == -7.0
    assert header.array_item("llama.feed_forward_length", 1) == 256, "a built array too"
    with pytest.raises(IndexError):
        header.array_item("tokenizer.ggml.tokens", VOCAB)
    with pytest.raises(IndexError):
        header.array_item("tokenizer.ggml.tokens", -1)
    with pytest.raises(KeyError):
        header.array_item("general.name", 0)


def test_an_item_of_a_file_cut_since_the_header_was_read_is_refused(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf")
    header = read_gguf_header(path)
    tokens = header.arrays["tokenizer.ggml.tokens"]
    path.write_bytes(path.read_bytes()[:tokens.offset + 100])
    with pytest.raises(InvalidModelFileError, match="not a readable GGUF file"):
        header.array_item("tokenizer.ggml.tokens", VOCAB - 1)
    with pytest.raises(InvalidModelFileError, match="not a readable GGUF file"):
        header.array("tokenizer.ggml.tokens")


def test_bundled_model_matches_gguf_reader(real_gguf: Path) -> None:
    started = time.perf_counter()
    info = read_gguf_info(real_gguf)
    read_gguf_metadata(real_gguf)
    elapsed = time.perf_counter() - started
    reader = assert_matches_reference(real_gguf)
    assert (info.bos_token, info.eos_token) == ("<bos>", "<eos>")
    header = read_gguf_header(real_gguf)
    tokens = reader.fields["tokenizer.ggml.tokens"]
    for index in (0, 1, 2, 106, 262_143):
        assert header.array_item("tokenizer.ggml.tokens", index) == tokens.contents(index)
    # `deskai show`, import and /api/show read it; GGUFReader took ~8 s here, the walk ~0.02 s
    assert elapsed < 1.0


# -- malformed files ---------------------------------------------------------------------------

def test_every_truncation_is_an_invalid_model_file(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "whole.gguf")
    whole = path.read_bytes()
    data_start = GGUFReader(path, "r").data_offset
    cut = tmp_path / "cut.gguf"
    # every byte of the first 512 (magic, counts, the first keys), then every 7th byte of the
    # rest of the header (every field kind is crossed many times), then inside the tensor data
    # (a cut-off download)
    sizes = sorted({*range(min(512, data_start)), *range(512, data_start, 7), data_start,
                    data_start + 100, len(whole) - 1})
    accepted = []
    for size in sizes:
        cut.write_bytes(whole[:size])
        try:
            read_gguf_header(cut)
        except InvalidModelFileError as exc:
            assert "not a readable GGUF file" in str(exc)
        else:
            accepted.append(size)
    assert not accepted, f"files cut to these sizes were read: {accepted}"
    for size in sizes[::97] + sizes[-2:]:  # the store's readers refuse them the same way
        cut.write_bytes(whole[:size])
        for read in (read_gguf_info, read_gguf_metadata):
            with pytest.raises(InvalidModelFileError, match="not a readable GGUF file"):
                read(cut)


def test_a_cut_off_download_names_the_tensor(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "whole.gguf")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InvalidModelFileError, match="truncated: tensor 'blk.0.ffn_up.weight'"):
        read_gguf_info(path)


@pytest.mark.parametrize("content", [b"", b"GGU", b"PK\x03\x04 a zip, not a model",
                                     b"GGUF" + struct.pack("<I", 1) + bytes(16),
                                     b"GGUF\x03\x00\x00\x00" + b"\xff" * 40])
def test_not_gguf_is_an_invalid_model_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    for read in (read_gguf_header, read_gguf_info, read_gguf_metadata):
        with pytest.raises(InvalidModelFileError, match="not a readable GGUF file"):
            read(path)


def test_missing_file_and_directory_are_invalid_model_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFileError, match=r"\(no such file\)"):
        read_gguf_info(tmp_path / "absent.gguf")
    with pytest.raises(InvalidModelFileError, match=r"\(it is a directory\)"):
        read_gguf_info(tmp_path)


@pytest.mark.parametrize("offset", [8, 16, 24])  # tensor count, kv count, first key's length
def test_absurd_counts_fail_fast(tmp_path: Path, offset: int) -> None:
    data = bytearray(write_gguf(tmp_path / "tiny.gguf").read_bytes())
    data[offset:offset + 8] = struct.pack("<Q", 2**63)
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(data))
    started = time.perf_counter()
    with pytest.raises(InvalidModelFileError):
        read_gguf_header(path)
    assert time.perf_counter() - started < 5


def test_an_absurd_token_length_fails_fast(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf")
    tokens = read_gguf_header(path).arrays["tokenizer.ggml.tokens"]
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, tokens.offset, 2**62)  # the first token's length
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFileError, match="ends inside a string array"):
        read_gguf_header(path)


def test_unknown_value_type_is_an_invalid_model_file(tmp_path: Path) -> None:
    data = bytearray(write_gguf(tmp_path / "tiny.gguf").read_bytes())
    (key_length,) = struct.unpack_from("<Q", data, 24)  # the first key follows the counts
    struct.pack_into("<I", data, 32 + key_length, 99)
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFileError, match="not a readable GGUF file"):
        read_gguf_info(path)

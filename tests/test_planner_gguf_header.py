"""The planner's own GGUF header parser against ``gguf.GGUFReader``, the complete (slow) one."""

from __future__ import annotations

import struct
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFEndian, GGUFReader, GGUFWriter, LlamaFileType

from deskai.errors import InvalidModelFileError
from deskai.planner.readers import _read_header, architecture_from_gguf_fields, read_gguf

VOCAB = 300
HIDDEN = 64


def write_gguf(path: Path, *, endianess: GGUFEndian = GGUFEndian.LITTLE,
               tied: bool = True) -> Path:
    """A small llama GGUF with what real ones carry: per-layer lists, a vocabulary, quant types."""
    writer = GGUFWriter(str(path), "llama", endianess=endianess)
    writer.add_name("tiny test model")
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(3)
    writer.add_head_count(4)
    writer.add_head_count_kv([1, 2, 2])  # per layer: the planner takes the largest
    writer.add_feed_forward_length([128, 256, 192])
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(LlamaFileType.MOSTLY_Q8_0)
    writer.add_array("general.tags", ["tiny", "test", "ünïcode"])
    writer.add_bool("general.test_flag", True)
    writer.add_token_list([f"tok{i}" for i in range(VOCAB)])
    writer.add_token_scores([float(-i) for i in range(VOCAB)])
    writer.add_token_types([1] * VOCAB)
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


def reference(path: Path) -> dict[str, Any]:
    """What ``GGUFReader`` makes of the file, reduced to what the planner reads."""
    reader = GGUFReader(path, "r")
    fields = {name: field.contents() for name, field in reader.fields.items()
              if not name.startswith(("tokenizer.ggml.", "GGUF."))}
    bytes_by_type: dict[str, int] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        bytes_by_type[kind] = bytes_by_type.get(kind, 0) + int(tensor.n_bytes)
    names = [tensor.name for tensor in reader.tensors]
    embedding = reader.tensors[names.index("token_embd.weight")]
    return {"fields": fields, "bytes_by_type": bytes_by_type, "tensor_count": len(names),
            "embedding_bytes": int(embedding.n_bytes), "tied": "output.weight" not in names,
            "vocab": len(reader.fields["tokenizer.ggml.tokens"].data)}


def assert_matches_reference(path: Path) -> None:
    model = read_gguf(path)
    header = _read_header(path)
    expected = reference(path)
    assert header.fields == expected["fields"]
    assert len(header.tensors) == expected["tensor_count"]
    assert model.bytes_by_type == expected["bytes_by_type"]
    assert model.embedding_bytes == expected["embedding_bytes"]
    assert model.architecture == architecture_from_gguf_fields(
        expected["fields"], vocab=expected["vocab"], tied=expected["tied"], name=path.name)
    assert model.architecture.vocab == expected["vocab"]
    assert model.architecture.tied is expected["tied"]


@pytest.mark.parametrize("tied", [True, False])
def test_tiny_gguf_matches_gguf_reader(tmp_path: Path, tied: bool) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", tied=tied)
    assert_matches_reference(path)
    model = read_gguf(path)
    assert model.architecture.kv_heads == 2 and model.architecture.ffn == 256
    assert model.file_type == "q8_0"
    assert set(model.bytes_by_type) == {"Q8_0", "F32", "F16"}


def test_big_endian_gguf_reads_the_same(tmp_path: Path) -> None:
    little = read_gguf(write_gguf(tmp_path / "little.gguf"))
    big_path = write_gguf(tmp_path / "big.gguf", endianess=GGUFEndian.BIG)
    assert_matches_reference(big_path)
    big = read_gguf(big_path)
    assert replace(big.architecture, source=little.architecture.source) == little.architecture
    assert big.bytes_by_type == little.bytes_by_type


@pytest.mark.slow
def test_bundled_model_matches_gguf_reader(real_gguf: Path) -> None:
    started = time.perf_counter()
    model = read_gguf(real_gguf)
    elapsed = time.perf_counter() - started
    assert_matches_reference(real_gguf)
    assert model.file_type == "q4_k_m" and model.architecture.vocab == 262144
    # it runs before every model load; GGUFReader took ~8 s here, the header walk ~0.02 s
    assert elapsed < 1.0


def test_every_truncation_is_an_invalid_model_file(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "whole.gguf")
    whole = path.read_bytes()
    data_start = GGUFReader(path, "r").data_offset
    cut = tmp_path / "cut.gguf"
    # every byte of the header, then inside the tensor data (a cut-off download)
    accepted = []
    for size in [*range(data_start + 1), data_start + 100, len(whole) - 1]:
        cut.write_bytes(whole[:size])
        try:
            read_gguf(cut)
        except InvalidModelFileError as exc:
            assert "not a readable GGUF file" in str(exc)
        else:
            accepted.append(size)
    assert not accepted, f"files cut to these sizes were read: {accepted}"


@pytest.mark.parametrize("content", [b"", b"GGU", b"PK\x03\x04 a zip, not a model",
                                     b"GGUF" + struct.pack("<I", 1) + bytes(16)])
def test_not_gguf_is_an_invalid_model_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(InvalidModelFileError, match="not a readable GGUF file"):
        read_gguf(path)


def test_missing_file_and_directory_are_invalid_model_files(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.gguf", tmp_path):
        with pytest.raises(InvalidModelFileError):
            read_gguf(path)


@pytest.mark.parametrize("offset", [8, 16, 24])  # tensor count, kv count, first key's length
def test_absurd_counts_fail_fast(tmp_path: Path, offset: int) -> None:
    data = bytearray(write_gguf(tmp_path / "tiny.gguf").read_bytes())
    data[offset:offset + 8] = struct.pack("<Q", 2**63)
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(data))
    started = time.perf_counter()
    with pytest.raises(InvalidModelFileError):
        read_gguf(path)
    assert time.perf_counter() - started < 5


def test_unknown_value_type_is_an_invalid_model_file(tmp_path: Path) -> None:
    data = bytearray(write_gguf(tmp_path / "tiny.gguf").read_bytes())
    (key_length,) = struct.unpack_from("<Q", data, 24)  # the first key follows the counts
    struct.pack_into("<I", data, 32 + key_length, 99)
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFileError, match="not a readable GGUF file"):
        read_gguf(path)

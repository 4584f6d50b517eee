"""The planner's reading of a GGUF header against ``gguf.GGUFReader``, the complete (slow) one.

The header walk itself (fields, tensors, malformed files) is tested with the store, which owns
it: tests/test_store_gguf_header.py.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFEndian, GGUFReader
from test_store_gguf_header import write_gguf

from deskai.errors import InvalidModelFileError
from deskai.planner.readers import architecture_from_gguf_fields, read_gguf


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
    return {"fields": fields, "bytes_by_type": bytes_by_type,
            "embedding_bytes": int(embedding.n_bytes), "tied": "output.weight" not in names,
            "vocab": len(reader.fields["tokenizer.ggml.tokens"].data)}


def assert_matches_reference(path: Path) -> None:
    model = read_gguf(path)
    expected = reference(path)
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


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a zip, not a model"])
def test_not_gguf_is_an_invalid_model_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(InvalidModelFileError, match="not a readable GGUF file"):
        read_gguf(path)


def test_missing_file_and_directory_are_invalid_model_files(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.gguf", tmp_path):
        with pytest.raises(InvalidModelFileError):
            read_gguf(path)

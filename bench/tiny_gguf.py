"""Build a tiny llama-architecture GGUF with random weights and a real tokenizer.

Usage: python bench/tiny_gguf.py VOCAB.gguf OUT.gguf [HIDDEN LAYERS FFN HEADS KV_HEADS]

VOCAB.gguf is one of llama.cpp's ``models/ggml-vocab-*.gguf`` files (in llama-cpp-python's
sdist, ``vendor/llama.cpp/models/``): its ``tokenizer.*`` metadata is copied, so llama.cpp
tokenizes real text. Weights are f16 (norms f32), seeded: the model's output is noise, but
its speed and memory are a real llama.cpp model's of that shape.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def _field_value(field):  # GGUFReader field -> python value for GGUFWriter
    from gguf import GGUFValueType

    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if kind == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    return field.parts[field.data[0]].tolist()[0]


def build(vocab_path: Path, out: Path, hidden: int = 256, layers: int = 4, ffn: int = 768,
          heads: int = 4, kv_heads: int = 2, context: int = 4096, seed: int = 0) -> Path:
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(str(vocab_path))
    writer = GGUFWriter(str(out), "llama")
    writer.add_name(f"tiny-llama-{hidden}x{layers}")
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(1)  # mostly f16
    vocab = 0
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        value = _field_value(field)
        if name == "tokenizer.ggml.tokens":
            vocab = len(value)
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            writer.add_array(name, value)
        else:
            writer.add_key_value(name, value, kind)
    writer.add_vocab_size(vocab)
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads

    def mat(rows: int, cols: int) -> np.ndarray:  # GGUF shape (cols, rows) = numpy (rows, cols)
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    writer.add_tensor("token_embd.weight", mat(vocab, hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.add_tensor("output.weight", mat(vocab, hidden))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", mat(heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_k.weight", mat(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_v.weight", mat(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_output.weight", mat(hidden, heads * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", mat(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", mat(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", mat(hidden, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


if __name__ == "__main__":
    dims = [int(x) for x in sys.argv[3:8]]
    build(Path(sys.argv[1]), Path(sys.argv[2]), *dims)

"""A random-weight GGUF of a real model's shape, at llama.cpp's real Q4_K_M tensor mix.

Usage: python bench/shaped_gguf.py VOCAB.gguf OUT.gguf [LAYERS]

The default shape is Llama 3 8B's (meta-llama/Meta-Llama-3-8B config.json: 32 layers x 4096,
32 heads, 8 KV heads, FFN 14336, RoPE base 500000, 8192 context; the 128,256-token vocabulary
comes with VOCAB.gguf, llama.cpp's ``models/ggml-vocab-llama-bpe.gguf``). Tensor types follow
``llama_tensor_get_type`` for Q4_K_M in llama.cpp's src/llama-quant.cpp: Q4_K everywhere but
the output (Q6_K) and attn_v / ffn_down on the ``use_more_bits`` layers (Q6_K). The blocks are
random bytes with their fp16 scales set to small normal values, so the weights are noise of a
real model's magnitude: decode and prefill cost what the real file's would (4.9 GB, as
published Q4_K_M files of Llama 3 8B), with no quantization to wait for. Tensors are written
one at a time: memory stays at the largest tensor's size.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tiny_gguf import _field_value  # the tokenizer copy tiny_gguf already does


@dataclass(frozen=True, slots=True)
class Shape:
    """A llama-architecture decoder's hyperparameters (vocabulary from the vocab file)."""

    layers: int = 32
    hidden: int = 4096
    heads: int = 32
    kv_heads: int = 8
    ffn: int = 14336
    context: int = 8192
    rope_base: float = 500000.0


LLAMA3_8B = Shape()
#: GGML block sizes: (weights, bytes) per block, and where a block's fp16 scales sit with the
#: value they get (ggml-common.h: block_q4_K = d, dmin, scales[12], qs[128]; block_q6_K =
#: ql[128], qh[64], scales[16], d). Q4_K weights are d*sc*q - dmin*m with q in 0..15 and sc, m
#: in 0..63: dmin = 7.5 d centres them. Q6_K weights are d*scale*(q - 32), |scale| < 128.
BLOCKS: dict[str, tuple[int, int]] = {"Q4_K": (256, 144), "Q6_K": (256, 210), "F32": (1, 4)}
SCALES: dict[str, tuple[tuple[int, float], ...]] = {
    "Q4_K": ((0, 1e-4), (2, 7.5e-4)),
    "Q6_K": ((208, 2e-5),),
}
FILE_TYPE_Q4_K_M = 15  # llama_ftype LLAMA_FTYPE_MOSTLY_Q4_K_M


def use_more_bits(layer: int, layers: int) -> bool:
    """llama-quant.cpp's choice of the layers whose attn_v and ffn_down get Q6_K."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    rows: int
    cols: int
    type: str

    @property
    def nbytes(self) -> int:
        weights, size = BLOCKS[self.type]
        return self.rows * self.cols // weights * size


def tensor_plan(shape: Shape, vocab: int) -> list[Tensor]:
    """Every tensor of the model, in file order, with its Q4_K_M type."""
    head_dim = shape.hidden // shape.heads
    kv = shape.kv_heads * head_dim
    plan = [Tensor("token_embd.weight", vocab, shape.hidden, "Q4_K")]
    for i in range(shape.layers):
        more = "Q6_K" if use_more_bits(i, shape.layers) else "Q4_K"
        plan += [
            Tensor(f"blk.{i}.attn_norm.weight", 1, shape.hidden, "F32"),
            Tensor(f"blk.{i}.attn_q.weight", shape.hidden, shape.hidden, "Q4_K"),
            Tensor(f"blk.{i}.attn_k.weight", kv, shape.hidden, "Q4_K"),
            Tensor(f"blk.{i}.attn_v.weight", kv, shape.hidden, more),
            Tensor(f"blk.{i}.attn_output.weight", shape.hidden, shape.hidden, "Q4_K"),
            Tensor(f"blk.{i}.ffn_norm.weight", 1, shape.hidden, "F32"),
            Tensor(f"blk.{i}.ffn_gate.weight", shape.ffn, shape.hidden, "Q4_K"),
            Tensor(f"blk.{i}.ffn_up.weight", shape.ffn, shape.hidden, "Q4_K"),
            Tensor(f"blk.{i}.ffn_down.weight", shape.hidden, shape.ffn, more),
        ]
    plan += [Tensor("output_norm.weight", 1, shape.hidden, "F32"),
             Tensor("output.weight", vocab, shape.hidden, "Q6_K")]
    return plan


def tensor_data(tensor: Tensor, rng: np.random.Generator) -> np.ndarray:
    """The tensor's bytes: ones for a norm, random blocks with sane fp16 scales otherwise."""
    if tensor.type == "F32":
        return np.ones(tensor.cols, dtype=np.float32)
    weights, size = BLOCKS[tensor.type]
    blocks = np.frombuffer(rng.bytes(tensor.nbytes), dtype=np.uint8).reshape(-1, size).copy()
    for offset, value in SCALES[tensor.type]:
        blocks[:, offset:offset + 2] = np.frombuffer(np.float16(value).tobytes(), np.uint8)
    return blocks.reshape(tensor.rows, tensor.cols // weights * size)


def _tokenizer_fields(vocab_path: Path) -> Iterator[tuple[str, object, object]]:
    from gguf import GGUFReader

    reader = GGUFReader(str(vocab_path))
    for name, field in reader.fields.items():
        if name.startswith("tokenizer."):
            yield name, _field_value(field), field.types[0]


def build(vocab_path: Path, out: Path, shape: Shape = LLAMA3_8B, seed: int = 0) -> int:
    """Write the GGUF; returns the tensor bytes written."""
    from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

    writer = GGUFWriter(str(out), "llama")
    writer.add_name(f"random-llama-{shape.layers}x{shape.hidden}-q4_k_m")
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.hidden // shape.heads)
    writer.add_rope_freq_base(shape.rope_base)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(FILE_TYPE_Q4_K_M)
    vocab = 0
    for name, value, kind in _tokenizer_fields(vocab_path):
        if name == "tokenizer.ggml.tokens":
            vocab = len(value)  # type: ignore[arg-type]
        if kind == GGUFValueType.ARRAY:
            writer.add_array(name, value)  # type: ignore[arg-type]
        else:
            writer.add_key_value(name, value, kind)  # type: ignore[arg-type]
    writer.add_vocab_size(vocab)
    plan = tensor_plan(shape, vocab)
    for tensor in plan:
        if tensor.type == "F32":
            writer.add_tensor_info(tensor.name, (tensor.cols,), np.dtype(np.float32),
                                   tensor.nbytes)
        else:
            weights, size = BLOCKS[tensor.type]
            writer.add_tensor_info(tensor.name, (tensor.rows, tensor.cols // weights * size),
                                   np.dtype(np.uint8), tensor.nbytes,
                                   raw_dtype=GGMLQuantizationType[tensor.type])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for tensor in plan:
        writer.write_tensor_data(tensor_data(tensor, rng))
    writer.close()
    return sum(t.nbytes for t in plan)


if __name__ == "__main__":
    layers = int(sys.argv[3]) if len(sys.argv) > 3 else LLAMA3_8B.layers
    written = build(Path(sys.argv[1]), Path(sys.argv[2]), Shape(layers=layers))
    print(f"{sys.argv[2]}: {written / 1e9:.2f} GB of tensors")

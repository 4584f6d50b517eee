"""``deskai tune --merge``: the adapter folded into the base weights, re-quantized, one GGUF.

The base GGUF is copied tensor by tensor; each tensor a LoRA touched is dequantized with
gguf-py, gets ``scale * B @ A`` added, and is written as float16; every other tensor keeps its
original quantized bytes. The training chat template goes into ``tokenizer.chat_template`` so
the merged file serves correctly anywhere (llama.cpp, Ollama), not just in deskai. llama.cpp's
own quantizer then brings the float16 tensors back to the base's quantization (e.g. Q4_K_M).
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np

from deskai.errors import TrainingError


def merge_adapter_into_gguf(base_gguf: Path, adapter_dir: Path, output: Path, *,
                            chat_template: str | None, quantization: str | None,
                            threads: int = 1) -> Path:
    """Write ``output``: ``base_gguf`` + the PEFT adapter in ``adapter_dir``, re-quantized."""
    unquantized = output.with_name(output.name + ".f16.gguf")
    try:
        _write_merged_f16(base_gguf, adapter_dir, unquantized, chat_template)
        _quantize(unquantized, output, quantization, threads)
    finally:
        unquantized.unlink(missing_ok=True)
    return output


def _lora_deltas(adapter_dir: Path) -> dict[str, np.ndarray]:
    """HF weight name (``model.layers.0.self_attn.q_proj.weight``) → ``scale * B @ A``."""
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = float(config["lora_alpha"]) / float(config["r"])
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    deltas = {}
    for key, a in tensors.items():
        if ".lora_A." not in key:
            continue
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        deltas[f"{module}.weight"] = (b.astype(np.float32) @ a.astype(np.float32)) * scale
    return deltas


def _write_merged_f16(base: Path, adapter_dir: Path, output: Path,
                      chat_template: str | None) -> None:
    import gguf

    reader = gguf.GGUFReader(str(base))
    arch_name = reader.fields["general.architecture"].contents()
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    n_blocks = int(reader.fields[f"{arch_name}.block_count"].contents())
    names = gguf.get_tensor_name_map(arch, n_blocks)
    deltas = {}
    for hf_name, delta in _lora_deltas(adapter_dir).items():
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
        if gguf_name is None:
            raise TrainingError(f"cannot place adapter tensor {hf_name} in the {arch_name} GGUF")
        deltas[gguf_name] = delta

    writer = gguf.GGUFWriter(str(output), arch_name, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        if field.name == "tokenizer.chat_template" and chat_template:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    if chat_template:
        writer.add_chat_template(chat_template)

    merged: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        if tensor.name in deltas:
            weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            merged[tensor.name] = (weight.astype(np.float32) + deltas[tensor.name]
                                   ).astype(np.float16)
            data = merged[tensor.name]
            writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes,
                                   gguf.GGMLQuantizationType.F16)
        else:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype,
                                   tensor.data.nbytes, tensor.tensor_type)
    missing = set(deltas) - set(merged)
    if missing:
        raise TrainingError(f"the base GGUF has no tensor {sorted(missing)[0]}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(merged.get(tensor.name, tensor.data))
    writer.close()


def _quantize(source: Path, output: Path, quantization: str | None, threads: int) -> None:
    """llama.cpp's quantizer, to the base's own type (unchanged tensors are copied as they are)."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{(quantization or 'F16').upper()}", None)
    if ftype is None:
        raise TrainingError(f"cannot re-quantize to {quantization!r}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = True  # the untouched tensors are already quantized
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(output).encode(),
                                            ctypes.byref(params))
    if status != 0:
        raise TrainingError(f"llama.cpp could not quantize the merged model (status {status})")

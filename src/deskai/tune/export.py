"""A trained adapter → files llama.cpp serves, registered in the store.

- the PEFT adapter (``adapter_model.safetensors`` + ``adapter_config.json``), kept as a blob;
- a GGUF LoRA made by llama.cpp's own ``convert_lora_to_gguf.py`` (fetched with the installed
  llama-cpp-python's sources, see ``deskai.convert.llamacpp_sources``), given the *local* base
  directory as ``--base`` so it never asks a hub for the config;
- a manifest naming the base blob (shared, not copied), the chat template used in training, the
  hyper-parameters, the data's sha256 and the final losses.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from deskai.convert.llamacpp_sources import run_converter
from deskai.store import PEFT_ADAPTER_MEDIA_TYPE, Layer, Manifest, Store


def save_peft_adapter(model: Any, directory: Path) -> Path:
    """PEFT's own format, with the base path cleared: the manifest names the base instead."""
    model.save_pretrained(str(directory), safe_serialization=True)
    config_path = directory / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = None  # a local cache path would mislead other tools
    config_path.write_text(json.dumps(config, indent=2))
    return directory


def convert_lora_to_gguf(adapter_dir: Path, base_hf_dir: Path, output: Path) -> Path:
    """llama.cpp's converter: PEFT adapter + local base config → GGUF LoRA (f16, half of f32)."""
    run_converter("convert_lora_to_gguf.py",
                  [str(adapter_dir.resolve()), "--base", str(base_hf_dir.resolve()),
                   "--outfile", str(output.resolve()), "--outtype", "f16"])
    return output


def register_tuned_model(store: Store, name: str, base: str, adapter_dir: Path,
                         base_hf_dir: Path, details: dict[str, Any]) -> Manifest:
    """Convert the adapter and list ``name`` in the store as base + adapter."""
    with tempfile.TemporaryDirectory(prefix="deskai-lora-", dir=_tmp_root(store)) as tmp:
        gguf = convert_lora_to_gguf(adapter_dir, base_hf_dir, Path(tmp) / "adapter.gguf")
        peft = store.add_blob(adapter_dir / "adapter_model.safetensors")
        peft_layer = Layer(PEFT_ADAPTER_MEDIA_TYPE, peft.digest, peft.size)
        adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
        return store.register_adapter(
            name, base, gguf, extra_layers=(peft_layer,),
            details={**details, "peft_config": _summary(adapter_config)})


def _summary(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("r", "lora_alpha", "lora_dropout", "target_modules", "peft_type")
    return {k: config.get(k) for k in keys}


def _tmp_root(store: Store) -> str:
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    return str(store.tmp_dir)

"""The base model for training: a store GGUF dequantized through transformers, or an HF directory.

Dequantizing a GGUF through transformers takes about a minute (most of it reading the tokenizer
arrays, which deskai does not even use), so the first load writes the float32 weights and config
as a plain Hugging Face directory under ``$DESKAI_HOME/cache/tune/`` and later runs load that in
seconds. The same directory is the *local* base config llama.cpp's LoRA converter needs, so
export never asks a hub for it.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskai.errors import TrainingError
from deskai.store import Store, resolve_model_path
from deskai.store.atomic import fsync_dir
from deskai.tune.device import CPU, TrainDevice

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, slots=True)
class BaseModel:
    """Where the base came from and the local HF directory holding its weights and config."""

    name: str  # store name, or the directory given
    hf_dir: Path
    gguf: Path | None  # the store blob, when the base is a store model
    digest: str | None  # its sha256 digest ("sha256:<hex>")


def require_torch() -> Any:
    """``torch``, or a clear message naming the extra to install."""
    try:
        import peft  # noqa: F401
        import torch
        import transformers
    except ImportError as exc:
        raise TrainingError(f"fine-tuning needs the tune extra ({exc.name} is missing): "
                            "pip install torch==2.13.0 'deskai[tune]'") from None
    # deskai draws its own progress; transformers' per-tensor bars and deprecation notes
    # would bury it
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    return torch


def resolve_base(store: Store, base: str) -> BaseModel:
    """A store name (GGUF, dequantized and cached) or a Hugging Face model directory."""
    path = Path(base)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TrainingError(f"{path}: not a Hugging Face model directory (no config.json)")
        return BaseModel(str(path), path, None, None)
    resolve_model_path(store, base)  # registers the bundled model on first use, like `run`
    manifest = store.get(base)
    layer = manifest.model_layer
    gguf = store.blob_path(layer.digest)
    cache = store.root / "cache" / "tune" / f"hf-{layer.digest.split(':')[1][:16]}"
    if not (cache / "model.safetensors").is_file():
        _dequantize_into(gguf, cache)
    return BaseModel(manifest.name, cache, gguf, layer.digest)


def _dequantize_into(gguf: Path, target: Path) -> None:
    torch = require_torch()
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32)
    staging = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied: stored once, as safetensors requires
    save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [type(model).__name__]
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    fsync_dir(target.parent)


def load_for_training(base: BaseModel, *, rank: int, alpha: float, dropout: float,
                      targets: tuple[str, ...] = LORA_TARGETS, device: TrainDevice = CPU) -> Any:
    """The base in ``device.base_dtype`` with fresh float32 LoRA adapters on ``targets``
    (everything else frozen), on ``device.device``."""
    torch = require_torch()
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base.hf_dir),
                                                 dtype=getattr(torch, device.base_dtype))
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(targets), bias="none", task_type="CAUSAL_LM")
    # The adapters are initialised here, on the CPU from its seeded generator, so a run starts
    # from the same LoRA weights on any device; autocast keeps them float32 over a bf16 base.
    peft_model = get_peft_model(model, config, autocast_adapter_dtype=True)
    return peft_model.to(device.device)


def decoder_and_head(peft_model: Any) -> tuple[Any, Any, float | None]:
    """The transformer body (hidden states out), the output projection, and logit soft-capping."""
    causal_lm = peft_model.get_base_model()
    head = causal_lm.get_output_embeddings().weight
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    return causal_lm.model, head, softcap

"""``deskai tune`` as one library call: data → checks → training → export → store.

A run lives in ``$DESKAI_HOME/tune/<name>/``: ``events.jsonl`` (every event, one JSON object per
line), ``checkpoints/`` and, once finished, ``adapter/`` (the PEFT adapter). Everything about a
run that a resume must agree with — base digest, data sha256, hyper-parameters — is checked
against the checkpoint before training continues.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from deskai import config as settings
from deskai.errors import TrainingError
from deskai.store import Manifest, Store, parse_model_name
from deskai.tune.data import load_dataset
from deskai.tune.device import pick_device
from deskai.tune.model import load_for_training, require_torch, resolve_base
from deskai.tune.template import (
    LlamaCppTokenizer,
    Sample,
    gguf_chat_template,
    make_formatter,
    tokenize_dataset,
)
from deskai.tune.train import EventCallback, TrainConfig, Trainer, TrainResult


@dataclass(frozen=True, slots=True)
class TuneOutcome:
    manifest: Manifest | None  # None when ``register`` was off
    result: TrainResult
    run_dir: Path
    adapter_dir: Path


def run_dir_for(store: Store, name: str) -> Path:
    return store.root / "tune" / parse_model_name(name).filename.removesuffix(".json")


def split_validation(samples: list[Sample], fraction: float,
                     seed: int) -> tuple[list[Sample], list[Sample]]:
    """A seeded held-out slice (at least one sample once there are 10 or more)."""
    if fraction <= 0 or len(samples) < 10:
        return samples, []
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(samples) * fraction))
    held = set(order[:n_val])
    return ([s for i, s in enumerate(samples) if i not in held],
            [s for i, s in enumerate(samples) if i in held])


def tune(store: Store, base: str, data: str | Path, name: str, config: TrainConfig, *,
         max_length: int = 1024, val_fraction: float = 0.05, resume: bool = False,
         on_event: EventCallback | None = None, register: bool = True,
         merge: bool = False, restart: bool = False, device: str = "auto") -> TuneOutcome:
    """Fine-tune ``base`` on ``data`` and list the result as ``name``.

    ``device`` is auto (the GPU when torch sees one), cpu, cuda or cuda:N.
    """
    parse_model_name(name)  # refuse a bad name before an hour of training
    dataset = load_dataset(data)  # and malformed data before loading any weights
    torch = require_torch()
    placement = pick_device(device)  # and a GPU that is not there
    torch.set_num_threads(config.threads or settings.threads())
    base_model = resolve_base(store, base)
    if base_model.gguf is None:
        raise TrainingError("a Hugging Face directory base trains, but serving needs a store "
                            "model: `deskai import DIR NAME` first, then tune NAME")
    tokenizer = LlamaCppTokenizer(base_model.gguf)
    try:
        template = gguf_chat_template(tokenizer)
        formatter = make_formatter(template, tokenizer)
        samples = tokenize_dataset(dataset, formatter, min(max_length, config.row_tokens))
    finally:
        tokenizer.close()
    train, val = split_validation(samples, val_fraction, config.seed)
    run_dir = run_dir_for(store, name)
    _start_fresh_or_resume(run_dir, name, resume=resume, restart=restart)
    torch.manual_seed(config.seed)  # the LoRA initialisation is part of the run's identity
    model = load_for_training(base_model, rank=config.rank, alpha=config.alpha,
                              dropout=config.dropout, device=placement)
    # the base's precision changes the arithmetic: a bf16 (GPU) run resumes only in bf16
    identity = {"base_digest": base_model.digest, "data_sha256": dataset.sha256,
                "base_dtype": placement.base_dtype}
    trainer = Trainer(model, train, val, config, run_dir, on_event, identity=identity)
    result = trainer.run(resume=resume)
    shutil.rmtree(trainer.checkpoints, ignore_errors=True)  # finished: nothing to resume
    adapter_dir = run_dir / "adapter"
    from deskai.tune.export import register_tuned_model, save_peft_adapter

    save_peft_adapter(model, adapter_dir)
    manifest = None
    if register:
        details = {
            "chat_template": template.source,
            "has_chat_template": bool(template.source),
            "chat_stop": [] if template.source else ["\nUser:"],
            "tune": {
                "hyperparameters": trainer.fingerprint(),
                "data": {"path": str(dataset.path), "sha256": dataset.sha256,
                         "formats": sorted(dataset.formats), "train_samples": len(train),
                         "val_samples": len(val)},
                "steps": result.steps, "train_loss": result.train_loss,
                "val_loss_before": result.val_loss_before, "val_loss": result.val_loss,
                "tokens_per_second": result.tokens_per_second,
            },
        }
        if merge:
            manifest = _register_merged(store, name, base_model.name, adapter_dir,
                                        template.source, config.threads or settings.threads())
        else:
            manifest = register_tuned_model(store, name, base_model.name, adapter_dir,
                                            base_model.hf_dir, details)
        trainer.emit("registered", name=manifest.name)
    return TuneOutcome(manifest, result, run_dir, adapter_dir)


def _start_fresh_or_resume(run_dir: Path, name: str, *, resume: bool, restart: bool) -> None:
    """Never throw away an interrupted run's checkpoints unless asked to.

    ``resume`` without a checkpoint simply starts the run, so one command line serves both.
    """
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    if checkpoints and not (resume or restart):
        raise TrainingError(f"an interrupted run of {name} has a checkpoint at "
                            f"{checkpoints[-1].stem}: add --resume to continue it, or "
                            "--restart to start over")
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)


def _register_merged(store: Store, name: str, base: str, adapter_dir: Path,
                     chat_template: str | None, threads: int) -> Manifest:
    """``--merge``: one standalone re-quantized GGUF instead of base + adapter."""
    from deskai.store.atomic import temp_path
    from deskai.store.store import _sha256_of
    from deskai.tune.merge import merge_adapter_into_gguf

    base_manifest = store.get(base)
    tmp = temp_path(store.tmp_dir, hint="-merged")
    merge_adapter_into_gguf(store.blob_path(base_manifest.model_layer.digest), adapter_dir, tmp,
                            chat_template=chat_template,
                            quantization=base_manifest.details.get("quantization"),
                            threads=threads)
    return store.adopt_blob(tmp, _sha256_of(tmp), name, source=f"tune:{base} (merged)")

"""Training throughput and peak memory: ``deskai tune``'s loop vs a plain TRL SFTTrainer + PEFT.

Both train the same LoRA (rank 16, alpha 32, no dropout, all attention and MLP projections) on
the same base (Gemma 3 270M, dequantized from the store's GGUF to float32), on the same first
``--examples`` conversations of examples/instructions.jsonl, for one epoch, with the same number
of threads, each in its own process (so peak RSS is that run's alone). Tokens/s counts the
input tokens of the epoch (padding excluded) over the wall time of the training call.

The plain recipe is TRL's documented one: a ``messages`` dataset, the model's chat template, a
batch of ``--batch`` padded sequences per step, the full logits and loss over every token. deskai
packs samples into rows of ``--row-tokens`` (no padding), computes the loss only where there are
labels, in chunks, without materialising the 262,144-wide logits.

    python bench/bench_tune.py --examples 64 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "instructions.jsonl"
MODEL = "gemma3:270m"
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                           "down_proj"]}


def _subset(count: int, directory: Path) -> Path:
    lines = DATA.read_text().splitlines()[:count]
    path = directory / "subset.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_deskai(data: Path, args: argparse.Namespace) -> dict[str, float]:
    from deskai.store import Store
    from deskai.tune import TrainConfig, tune

    config = TrainConfig(epochs=1, row_tokens=args.row_tokens, threads=args.threads,
                         rank=LORA["r"], alpha=LORA["lora_alpha"], checkpoint_every=10_000)
    outcome = tune(Store(), MODEL, data, "bench-tune", config, val_fraction=0.0,
                   register=False)
    result = outcome.result
    return {"tokens": result.tokens, "seconds": result.seconds, "steps": result.steps,
            "final_loss": result.losses[-1]}


def run_trl(data: Path, args: argparse.Namespace) -> dict[str, float]:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from deskai.store import Store
    from deskai.tune.model import resolve_base
    from deskai.tune.template import GEMMA3_CHAT_TEMPLATE

    torch.set_num_threads(args.threads)
    base = resolve_base(Store(), MODEL)
    tokenizer_dir = base.hf_dir.parent / f"{base.hf_dir.name}-tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():  # converting the GGUF vocab is slow
        assert base.gguf is not None
        AutoTokenizer.from_pretrained(str(base.gguf.parent),
                                      gguf_file=base.gguf.name).save_pretrained(tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(str(base.hf_dir), dtype=torch.float32)
    dataset = load_dataset("json", data_files=str(data), split="train")
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(output_dir=out, per_device_train_batch_size=args.batch,
                           num_train_epochs=1, learning_rate=2e-4, logging_steps=1,
                           save_strategy="no", report_to=[], use_cpu=True, max_length=1024,
                           dataloader_num_workers=0, seed=0)
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=LoraConfig(**LORA))
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        started = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"tokens": tokens, "seconds": seconds, "steps": trainer.state.global_step,
            "final_loss": losses[-1] if losses else float("nan")}


def child(args: argparse.Namespace) -> None:
    from deskai.store import Store, ensure_bundled_model

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    ensure_bundled_model(Store())
    runner = {"deskai": run_deskai, "trl": run_trl}[args.only]
    result = runner(Path(args.data), args)
    result["tokens_per_second"] = result["tokens"] / result["seconds"]
    result["peak_rss_mib"] = _peak_rss_mib()
    print("RESULT " + json.dumps(result), flush=True)


def parent(args: argparse.Namespace) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = _subset(args.examples, Path(tmp))
        for name in ("deskai", "trl"):
            command = [sys.executable, __file__, "--only", name, "--data", str(data),
                       "--threads", str(args.threads), "--batch", str(args.batch),
                       "--row-tokens", str(args.row_tokens)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            results[name] = json.loads(lines[-1].removeprefix("RESULT "))
    print(f"{args.examples} examples, 1 epoch, {args.threads} threads")
    print(f"{'':8} {'tokens':>7} {'steps':>5} {'seconds':>8} {'tok/s':>7} {'peak RSS':>9} "
          f"{'last loss':>9}")
    for name, r in results.items():
        print(f"{name:8} {r['tokens']:7.0f} {r['steps']:5.0f} {r['seconds']:8.1f} "
              f"{r['tokens_per_second']:7.1f} {r['peak_rss_mib']:6.0f} MiB {r['final_loss']:9.3f}")
    speedup = results["deskai"]["tokens_per_second"] / results["trl"]["tokens_per_second"]
    print(f"speed-up {speedup:.2f}x, peak RSS "
          f"{results['deskai']['peak_rss_mib'] / results['trl']['peak_rss_mib']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results,
                                               "speedup": speedup}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="TRL: sequences per step")
    parser.add_argument("--row-tokens", type=int, default=512, help="deskai: tokens per step")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--only", choices=["deskai", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    child(args) if args.only else parent(args)


if __name__ == "__main__":
    main()

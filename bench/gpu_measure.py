"""The GPU check's measurements, each run in a fresh process by bench/gpu_check.py; each prints
one ``RESULT {json}`` line.

    engine MODEL.gguf --levels 1,16,64   deskai's LlamaCppEngine in process, every layer on the
                                         GPU: streams decoding at once, greedy, 128 + 128 tokens
    tune-deskai / tune-trl               LoRA on a random-init Gemma 3 270M of the real shape:
                                         deskai's training loop (as ``deskai tune --device``
                                         places it), or a plain TRL SFTTrainer

Both tuners get the same seeded random token sequences (no tokenizer is needed, and the
machine has none of Gemma's), the same LoRA (rank 16, alpha 32, every attention and MLP
projection, bench/bench_tune.py's), one epoch; tokens/s = input tokens / the training call's
wall time. ``--tiny`` shrinks the model so the code paths run on a CPU in seconds (tests).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

#: google/gemma-3-270m's config.json (the shape; the weights here are random).
GEMMA3_270M: dict[str, Any] = {
    "vocab_size": 262144, "hidden_size": 640, "intermediate_size": 2048,
    "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 256, "max_position_embeddings": 32768, "sliding_window": 512,
    "query_pre_attn_scalar": 256, "tie_word_embeddings": True,
}
TINY: dict[str, Any] = {**GEMMA3_270M, "vocab_size": 4096, "hidden_size": 64,
                        "intermediate_size": 128, "num_hidden_layers": 2, "head_dim": 16}
LORA: dict[str, Any] = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                           "up_proj", "down_proj"]}


def result(payload: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(payload), flush=True)


# -- engine ---------------------------------------------------------------------------------


def engine_options(streams: int, gpu_layers: int) -> tuple[Any, dict[str, Any]]:
    """EngineOptions for ``streams`` slots, with every layer on the GPU where the engine can
    offload (its ``gpu_layers``); what was set, for the record."""
    from dataclasses import fields

    from deskai.engine.protocol import EngineOptions

    known = {f.name for f in fields(EngineOptions)}
    wanted: dict[str, Any] = {
        "context_length": 512, "parallel": streams, "threads": 4, "batch_tokens": 2048,
        "max_queue": 4 * streams, "prefix_cache": False, "gpu_layers": gpu_layers,
        "flash_attn": gpu_layers > 0}
    chosen = {k: v for k, v in wanted.items() if k in known}
    return EngineOptions(**chosen), {**chosen, "missing": sorted(set(wanted) - known)}


def run_level(engine: Any, level: int, *, prompt_tokens: int, output_tokens: int,
              first: int) -> dict[str, Any]:
    """``max(level, 4)`` requests, ``level`` at a time; per-token arrival times."""
    from concurrent.futures import ThreadPoolExecutor

    from deskai.benchmark.loadgen import make_prompt
    from deskai.engine.protocol import GenerationRequest, generate
    from deskai.engine.sampling import SamplingParams

    params = SamplingParams(max_tokens=output_tokens, temperature=0.0)

    def one(index: int) -> tuple[float, list[float], int]:
        start = time.perf_counter()
        arrivals: list[float] = []
        for delta in generate(engine, GenerationRequest(make_prompt(index, prompt_tokens),
                                                        params)):
            arrivals += [time.perf_counter()] * len(delta.token_ids)
        return start, arrivals, len(arrivals)

    count = max(level, 4)
    with ThreadPoolExecutor(level) as pool:
        began = time.perf_counter()
        runs = list(pool.map(one, range(first, first + count)))
        duration = time.perf_counter() - began
    gaps = [b - a for _, arrivals, _ in runs for a, b in zip(arrivals, arrivals[1:],
                                                              strict=False)]
    itl = statistics.fmean(gaps) if gaps else float("nan")
    return {"streams": level, "requests": count, "seconds": duration,
            "output_tokens": sum(n for *_, n in runs),
            "output_tok_s": sum(n for *_, n in runs) / duration,
            "ttft_p50_s": statistics.median(a[0] - s for s, a, _ in runs if a),
            "itl_mean_s": itl, "decode_tok_s": level / itl if gaps else 0.0}


def engine_main(args: argparse.Namespace) -> None:
    from deskai.engine.llamacpp.engine import LlamaCppEngine

    levels = [int(x) for x in args.levels.split(",")]
    options, recorded = engine_options(max(levels), args.gpu_layers)
    loaded = time.perf_counter()
    engine = LlamaCppEngine(args.model, options)
    load_s = time.perf_counter() - loaded
    try:
        run_level(engine, 1, prompt_tokens=8, output_tokens=4, first=10_000)  # warm-up
        rows, first = [], 0
        for level in levels:
            rows.append(run_level(engine, level, prompt_tokens=args.prompt_tokens,
                                  output_tokens=args.output_tokens, first=first))
            first += max(level, 4)
    finally:
        engine.close()
    result({"options": recorded, "load_s": load_s, "levels": rows})


# -- tuning ---------------------------------------------------------------------------------


def token_rows(vocab: int, count: int, low: int, high: int, seed: int = 0) -> list[list[int]]:
    """``count`` random token sequences of ``low``..``high`` tokens (seeded: both tuners
    see the same ones); ids avoid the first 16, where special tokens live."""
    rng = random.Random(seed)
    return [[rng.randrange(16, vocab) for _ in range(rng.randint(low, high))]
            for _ in range(count)]


def random_model_dir(shape: dict[str, Any], target: Path) -> Path:
    """A Hugging Face directory holding a random-init Gemma 3 text model of ``shape``."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Gemma3TextConfig(**shape), dtype=torch.float32)
    model.save_pretrained(target)
    return target


def tune_deskai(model_dir: Path, rows: list[list[int]], threads: int,
                requested: str) -> dict[str, Any]:
    """deskai's loop as ``deskai tune --device`` runs it: on a GPU, a bf16 base under float32
    LoRA weights (deskai.tune.device)."""
    from deskai.tune.device import pick_device
    from deskai.tune.model import BaseModel, load_for_training
    from deskai.tune.template import Sample
    from deskai.tune.train import TrainConfig, Trainer

    placement = pick_device(requested)
    config = TrainConfig(epochs=1, row_tokens=512, threads=threads, rank=LORA["r"],
                         alpha=LORA["lora_alpha"], checkpoint_every=10**9, warmup_steps=1)
    samples = [Sample(i, ids, list(ids)) for i, ids in enumerate(rows)]
    model = load_for_training(BaseModel("random", model_dir, None, None), rank=config.rank,
                              alpha=config.alpha, dropout=0.0, device=placement)
    with tempfile.TemporaryDirectory() as run_dir:
        outcome = Trainer(model, samples, [], config, Path(run_dir)).run(resume=False)
    return {"device": placement.device, "dtype": f"{placement.base_dtype} base, float32 LoRA",
            "threads": threads, "tokens": outcome.tokens, "seconds": outcome.seconds,
            "steps": outcome.steps, "tokens_per_second": outcome.tokens_per_second,
            "final_loss": outcome.losses[-1]}


def tiny_tokenizer() -> Any:
    """TRL wants a processing class for its padding token; the data is already token ids."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
        pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tune_trl(model_dir: Path, rows: list[list[int]], on_gpu: bool) -> dict[str, Any]:
    """TRL's documented recipe: a float32 model, bf16 autocast on a GPU, padded batches of 8."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(output_dir=out, per_device_train_batch_size=8, num_train_epochs=1,
                           learning_rate=2e-4, logging_steps=1, save_strategy="no",
                           report_to=[], max_length=1024, dataloader_num_workers=0, seed=0,
                           bf16=on_gpu, use_cpu=not on_gpu)
        trainer = SFTTrainer(model=model, args=config,
                             train_dataset=Dataset.from_dict({"input_ids": rows}),
                             processing_class=tiny_tokenizer(), peft_config=LoraConfig(**LORA))
        tokens = sum(len(ids) for ids in rows)
        started = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - started
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"device": "cuda" if on_gpu else "cpu",
            "dtype": "float32, bf16 autocast" if on_gpu else "float32",
            "tokens": tokens, "seconds": seconds, "steps": trainer.state.global_step,
            "tokens_per_second": tokens / seconds,
            "final_loss": losses[-1] if losses else None}


def tune_main(args: argparse.Namespace) -> None:
    import torch

    shape = TINY if args.tiny else GEMMA3_270M
    torch.set_num_threads(args.threads)
    on_gpu = args.device != "cpu" and torch.cuda.is_available()
    # CPU training of a 262k-vocabulary model runs ~100 tok/s on 16 cores: keep it to a
    # few thousand tokens there, ~20k on a GPU
    count, low, high = (64, 128, 512) if on_gpu else (args.samples, 64, 160)
    rows = token_rows(shape["vocab_size"], count, low, high)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_model_dir(shape, Path(tmp) / "model")
        if args.which == "tune-deskai":
            measured = tune_deskai(model_dir, rows, args.threads, args.device)
        else:
            measured = tune_trl(model_dir, rows, on_gpu)
    result({"shape": shape, "samples": count, **measured})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="which", required=True)
    engine = commands.add_parser("engine")
    engine.add_argument("model")
    engine.add_argument("--levels", default="1,16,64")
    engine.add_argument("--gpu-layers", type=int, default=999)
    engine.add_argument("--prompt-tokens", type=int, default=128)
    engine.add_argument("--output-tokens", type=int, default=128)
    for name in ("tune-deskai", "tune-trl"):
        tune = commands.add_parser(name)
        tune.add_argument("--tiny", action="store_true", help="a toy shape, for tests")
        tune.add_argument("--threads", type=int, default=16)
        tune.add_argument("--samples", type=int, default=24, help="sequences when on a CPU")
        tune.add_argument("--device", default="auto", help="auto (the GPU if torch sees one), "
                          "cpu, cuda or cuda:N, as deskai tune --device")
    args = parser.parse_args()
    engine_main(args) if args.which == "engine" else tune_main(args)


if __name__ == "__main__":
    main()

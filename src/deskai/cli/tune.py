"""The ``tune`` verb: LoRA fine-tuning of a store model on a JSONL file, then serving it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from deskai.cli._app import app, console
from deskai.store import Store
from deskai.tune import TrainConfig, tune


@app.command("tune")
def tune_model(
    base: str = typer.Argument(..., help="Base model: a store name, e.g. gemma3:270m."),
    data: Path = typer.Argument(..., help="Training data: chat `messages` JSONL (also Alpaca, "
                                "ShareGPT, {\"text\"} lines, or a .txt file)."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the tuned model, NAME[:TAG]."),
    epochs: int = typer.Option(3, help="Passes over the training data."),
    max_steps: int = typer.Option(0, "--max-steps", help="Stop after this many steps (0: all)."),
    learning_rate: float = typer.Option(5e-4, "--lr", help="Peak learning rate (AdamW)."),
    rank: int = typer.Option(16, help="LoRA rank."),
    alpha: float = typer.Option(32.0, help="LoRA alpha (scale = alpha / rank)."),
    dropout: float = typer.Option(0.0, help="LoRA dropout."),
    row_tokens: int = typer.Option(512, "--row-tokens", help="Tokens per step (samples are "
                                   "packed into rows this long)."),
    max_length: int = typer.Option(1024, "--max-length", help="Longest sample accepted."),
    val_fraction: float = typer.Option(0.05, "--val-fraction", help="Held out for val loss."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Steps per checkpoint."),
    seed: int = typer.Option(0, help="Seed of the LoRA init and data order."),
    threads: int = typer.Option(0, help="CPU threads (0: every core)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint of "
                                "a run with the same name, data and options."),
    restart: bool = typer.Option(False, "--restart", help="Discard an interrupted run's "
                                 "checkpoints and start over."),
    merge: bool = typer.Option(False, "--merge", help="Write one merged GGUF, re-quantized "
                               "like the base, instead of base + adapter."),
    device: str = typer.Option("auto", "--device", help="auto (the GPU when torch sees one), "
                               "cpu, cuda or cuda:N."),
) -> None:
    """Fine-tune BASE on DATA with LoRA and add the result to the store as NAME."""
    config = TrainConfig(rank=rank, alpha=alpha, dropout=dropout, learning_rate=learning_rate,
                         epochs=epochs, max_steps=max_steps or None, row_tokens=row_tokens,
                         checkpoint_every=checkpoint_every, seed=seed, threads=threads)
    with _training_progress() as on_event:
        outcome = tune(Store(), base, data, name, config, max_length=max_length,
                       val_fraction=val_fraction, resume=resume, on_event=on_event,
                       merge=merge, restart=restart, device=device)
    result = outcome.result
    before = f"{result.val_loss_before:.3f} → " if result.val_loss_before is not None else ""
    val = f", val loss {before}{result.val_loss:.3f}" if result.val_loss is not None else ""
    console.print(f"tuned [bold]{name}[/] in {result.steps} steps: train loss "
                  f"{result.train_loss:.3f}{val}, {result.tokens_per_second:.0f} tokens/s")
    console.print(f"run log {outcome.run_dir / 'events.jsonl'}; try: deskai run {name}")


@contextlib.contextmanager
def _training_progress() -> Iterator[Any]:
    """A rich bar showing step, loss, tokens/s and ETA, fed by the trainer's events."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} steps"),
                        TextColumn("loss {task.fields[loss]}"),
                        TextColumn("{task.fields[rate]} tok/s"), TimeRemainingColumn(),
                        console=console, transient=False)
    task: list[TaskID] = []

    def on_event(event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            console.print(f"training on {event['device']} ({event['base_dtype']} base, "
                          "float32 LoRA)")
            start = event.get("resumed_from") or 0
            task.append(progress.add_task("training", total=event["total_steps"],
                                          completed=start, loss="-", rate="-"))
            if start:
                console.print(f"resumed from step {start}")
        elif kind == "step" and task:
            progress.update(task[0], completed=event["step"], loss=f"{event['loss']:.3f}",
                            rate=f"{event['tokens_per_second']:.0f}")
        elif kind == "eval":
            console.print(f"step {event['step']}: val loss {event['val_loss']:.3f}")

    with progress:
        yield on_event

"""The LoRA training loop: packed rows, chunked loss, checkpoints that survive SIGKILL.

One optimizer step trains on one *row*: whole samples packed end to end up to ``row_tokens``,
with position ids restarting at each sample so attention never crosses a sample boundary
(transformers builds a block-diagonal mask from the position ids). No padding is computed.

The data order of epoch ``e`` is a permutation seeded by ``(seed, e)``, so it is a pure
function of the configuration: a resumed run recomputes it instead of storing it. A checkpoint
holds the LoRA weights, the optimizer and scheduler state and every RNG state, written to a temp
file and renamed, so a kill at any instant leaves the previous checkpoint intact; ``resume``
continues from the newest and ends bit-for-bit where an uninterrupted run ends.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deskai.errors import TrainingError
from deskai.tune.template import Sample

Event = dict[str, Any]
EventCallback = Callable[[Event], None]
KEPT_CHECKPOINTS = 2


@dataclass(slots=True)
class TrainConfig:
    """Hyper-parameters of one run; all of them are recorded in the tuned model's manifest."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    learning_rate: float = 5e-4
    epochs: int = 3
    max_steps: int | None = None  # stop early (tests, smoke runs); None trains every epoch
    row_tokens: int = 512  # tokens per optimizer step (samples packed end to end)
    warmup_steps: int = 5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50
    eval_every: int = 0  # 0: evaluate only before and after training
    loss_chunk: int = 256
    threads: int = 0  # 0: every core

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the interrupted one (threads may differ)."""
        data = asdict(self)
        data.pop("threads")
        data.pop("checkpoint_every")
        return data


@dataclass(slots=True)
class TrainResult:
    steps: int
    train_loss: float
    val_loss_before: float | None
    val_loss: float | None
    tokens: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def pack_rows(samples: list[Sample], order: list[int], row_tokens: int) -> list[list[int]]:
    """Sample indices in ``order`` packed into rows of at most ``row_tokens`` (next fit)."""
    rows: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index in order:
        length = len(samples[index].input_ids)
        if current and used + length > row_tokens:
            rows.append(current)
            current, used = [], 0
        current.append(index)
        used += length
    if current:
        rows.append(current)
    return rows


def epoch_rows(samples: list[Sample], config: TrainConfig, epoch: int) -> list[list[int]]:
    import torch

    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(len(samples), generator=generator).tolist()
    return pack_rows(samples, order, config.row_tokens)


def step_plan(samples: list[Sample], config: TrainConfig) -> list[list[int]]:
    """The row of every optimizer step of the run, in order."""
    plan: list[list[int]] = []
    epoch = 0
    while epoch < config.epochs or (config.max_steps and len(plan) < config.max_steps):
        plan.extend(epoch_rows(samples, config, epoch))
        epoch += 1
        if config.max_steps and len(plan) >= config.max_steps:
            break
    return plan[: config.max_steps] if config.max_steps else plan


def row_tensors(samples: list[Sample], row: list[int]) -> tuple[Any, Any, Any]:
    import torch

    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for index in row:
        sample = samples[index]
        ids.extend(sample.input_ids)
        labels.extend(sample.labels)
        positions.extend(range(len(sample.input_ids)))
    return (torch.tensor([ids]), torch.tensor([labels]), torch.tensor([positions]))


def row_loss(body: Any, head: Any, softcap: float | None, samples: list[Sample],
             row: list[int], chunk: int) -> tuple[Any, int, int]:
    """Mean loss of one packed row, its trained-token count and its total token count."""
    from deskai.tune.loss import chunked_cross_entropy

    ids, labels, positions = (t.to(head.device) for t in row_tensors(samples, row))
    hidden = body(input_ids=ids, position_ids=positions).last_hidden_state
    loss, count = chunked_cross_entropy(hidden, head, labels, chunk=chunk, softcap=softcap)
    return loss, count, ids.shape[1]


def evaluate(body: Any, head: Any, softcap: float | None, samples: list[Sample],
             config: TrainConfig) -> float | None:
    """Token-weighted mean loss over held-out samples (no gradients)."""
    import torch

    if not samples:
        return None
    total, count = 0.0, 0
    with torch.no_grad():
        for row in pack_rows(samples, list(range(len(samples))), config.row_tokens):
            loss, n, _ = row_loss(body, head, softcap, samples, row, config.loss_chunk)
            total += float(loss) * n
            count += n
    return total / count if count else None


class Trainer:
    """Runs (or resumes) one LoRA training run in ``run_dir``."""

    def __init__(self, model: Any, train: list[Sample], val: list[Sample], config: TrainConfig,
                 run_dir: Path, on_event: EventCallback | None = None, *,
                 identity: dict[str, Any] | None = None) -> None:
        import torch

        from deskai.tune.model import decoder_and_head

        self.torch = torch
        self.model = model
        self.train_samples, self.val_samples = train, val
        self.config = config
        self.identity = identity or {}  # base and data digests: a resume must match them too
        self.run_dir = run_dir
        self.checkpoints = run_dir / "checkpoints"
        self.events_path = run_dir / "events.jsonl"
        self._on_event = on_event
        self.body, self.head, self.softcap = decoder_and_head(model)
        self.device = self.head.device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.plan = step_plan(train, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        self.tokens = 0
        self.losses: list[float] = []
        self.val_before: float | None = None

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 10% over the planned steps."""
        warmup = max(1, self.config.warmup_steps)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, len(self.plan) - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    # -- the loop -----------------------------------------------------------------------------

    def run(self, *, resume: bool) -> TrainResult:
        resumed = resume and self._restore_latest()
        if not resumed:
            self.val_before = evaluate(self.body, self.head, self.softcap, self.val_samples,
                                       self.config)
        self.emit("start", total_steps=len(self.plan), resumed_from=self.step if resumed else None,
                  train_samples=len(self.train_samples), val_samples=len(self.val_samples),
                  val_loss=self.val_before, device=str(self.device),
                  base_dtype=str(self.head.dtype).removeprefix("torch."))
        self.model.train()
        started, tokens_at_start, first_step = time.monotonic(), self.tokens, self.step
        while self.step < len(self.plan):
            loss, n_tokens = self._train_step(self.plan[self.step])
            self.step += 1
            self.tokens += n_tokens
            self.losses.append(loss)
            elapsed = time.monotonic() - started
            rate = (self.tokens - tokens_at_start) / elapsed if elapsed > 0 else 0.0
            per_step = elapsed / max(1, self.step - first_step)
            self.emit("step", step=self.step, total_steps=len(self.plan), loss=loss,
                      lr=self.scheduler.get_last_lr()[0], tokens=self.tokens,
                      tokens_per_second=rate, eta_s=(len(self.plan) - self.step) * per_step)
            if self.config.eval_every and self.step % self.config.eval_every == 0:
                self._eval_event()
            if self.step % self.config.checkpoint_every == 0 and self.step < len(self.plan):
                self.save_checkpoint()
        seconds = time.monotonic() - started
        val = self._eval_event()
        result = TrainResult(self.step, _tail_mean(self.losses), self.val_before, val,
                             self.tokens - tokens_at_start, seconds, self.losses)
        self.emit("done", steps=self.step, train_loss=result.train_loss, val_loss=val,
                  seconds=seconds, tokens_per_second=result.tokens_per_second)
        return result

    def _train_step(self, row: list[int]) -> tuple[float, int]:
        loss, _, n_tokens = row_loss(self.body, self.head, self.softcap, self.train_samples,
                                     row, self.config.loss_chunk)
        loss.backward()
        if self.config.max_grad_norm:
            self.torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item(), n_tokens

    def _eval_event(self) -> float | None:
        self.model.eval()
        val = evaluate(self.body, self.head, self.softcap, self.val_samples, self.config)
        self.model.train()
        if val is not None:
            self.emit("eval", step=self.step, val_loss=val)
        return val

    # -- checkpoints --------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        return {**self.config.fingerprint(), **self.identity}

    def save_checkpoint(self) -> Path:
        torch = self.torch
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":  # dropout on the GPU draws from the GPU's generator
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "step": self.step,
            "tokens": self.tokens,
            "losses": self.losses,
            "val_before": self.val_before,
            "fingerprint": self.fingerprint(),
            "lora": {k: v.detach().to("cpu", copy=True) for k, v in self.model.named_parameters()
                     if v.requires_grad},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
        }
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final = self.checkpoints / f"step-{self.step:07d}.pt"
        tmp = final.with_suffix(f".{os.getpid()}.partial")
        torch.save(state, tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        for old in sorted(self.checkpoints.glob("step-*.pt"))[:-KEPT_CHECKPOINTS]:
            old.unlink(missing_ok=True)
        self.emit("checkpoint", step=self.step, path=str(final))
        return final

    def _restore_latest(self) -> bool:
        found = sorted(self.checkpoints.glob("step-*.pt")) if self.checkpoints.is_dir() else []
        if not found:
            return False
        # onto the CPU first, so loading never needs the device the checkpoint was written on;
        # copy_ and the optimizer's load_state_dict bring each tensor to its parameter's device
        state = self.torch.load(found[-1], map_location="cpu", weights_only=False)
        if state["fingerprint"] != self.fingerprint():
            raise TrainingError(f"{found[-1]} was written with other settings "
                                f"({_diff(state['fingerprint'], self.fingerprint())}); "
                                "rerun with the same options, or without --resume")
        params = dict(self.model.named_parameters())
        with self.torch.no_grad():
            for key, value in state["lora"].items():
                params[key].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            self.torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        random.setstate(state["rng"]["python"])
        self.step, self.tokens = state["step"], state["tokens"]
        self.losses, self.val_before = state["losses"], state["val_before"]
        self.emit("resume", step=self.step, path=str(found[-1]))
        return True

    # -- events -------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        event = {"event": kind, "time": round(time.time(), 3), **fields}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.events_path.open("a") as log:
            log.write(json.dumps(event) + "\n")
        if self._on_event is not None:
            self._on_event(event)


def _tail_mean(losses: list[float], window: int = 10) -> float:
    tail = losses[-window:]
    return sum(tail) / len(tail) if tail else float("nan")


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
    return ", ".join(changed) or "unknown difference"

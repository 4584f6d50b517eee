"""Training on the real Gemma 3 270M: the loss goes down, and a SIGKILLed run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from tune_support import MEMORISE, REAL_MODEL, make_tune_home, write_jsonl  # noqa: E402

from deskai.errors import TrainingError  # noqa: E402
from deskai.store import Store  # noqa: E402
from deskai.tune import TrainConfig, tune  # noqa: E402

pytestmark = pytest.mark.slow

STEPS = 6
OPTIONS = {"max_steps": STEPS, "row_tokens": 64, "checkpoint_every": 2, "threads": 1,
           "learning_rate": 1e-3, "epochs": 2}
CLI_OPTIONS = ["--max-steps", str(STEPS), "--row-tokens", "64", "--checkpoint-every", "2",
               "--threads", "1", "--lr", "1e-3", "--epochs", "2"]


@pytest.fixture(scope="module")
def tune_home(tmp_path_factory: pytest.TempPathFactory, shared_home: Path) -> Path:
    return make_tune_home(tmp_path_factory.mktemp("tune-home"), shared_home)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "memorise.jsonl", MEMORISE)


@pytest.fixture(scope="module")
def uninterrupted(tune_home: Path, data: Path) -> list[float]:
    torch.set_num_threads(1)
    outcome = tune(Store(tune_home), REAL_MODEL, data, "mem-a", TrainConfig(**OPTIONS),
                   register=False)
    return outcome.result.losses


def test_loss_goes_down_on_a_memorisation_set(uninterrupted: list[float]) -> None:
    assert len(uninterrupted) == STEPS
    assert uninterrupted[-1] < uninterrupted[0] - 2.0, uninterrupted


def _step_losses(events: Path) -> dict[int, float]:
    losses = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "step":
            losses[event["step"]] = event["loss"]
    return losses


def test_resume_after_sigkill_ends_where_an_uninterrupted_run_ends(
        tune_home: Path, data: Path, uninterrupted: list[float]) -> None:
    env = {**os.environ, "DESKAI_HOME": str(tune_home)}
    command = [sys.executable, "-m", "deskai", "tune", REAL_MODEL, str(data), "--name", "mem-b",
               *CLI_OPTIONS]
    events = tune_home / "tune" / "mem-b%3Alatest" / "events.jsonl"
    victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        if events.is_file() and '"checkpoint"' in events.read_text():
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert '"checkpoint"' in events.read_text(), "the run never reached its first checkpoint"
    assert '"done"' not in events.read_text(), "killed too late: the run had finished"

    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed from step" in done.stdout
    resumed = _step_losses(events)
    assert resumed[STEPS] == pytest.approx(uninterrupted[-1], abs=1e-3)
    assert Store(tune_home).exists("mem-b")


class Crash(Exception):
    pass


def _crash_after_checkpoint(event: dict) -> None:
    if event["event"] == "checkpoint":
        raise Crash


def test_resume_with_other_options_is_refused(tune_home: Path, data: Path) -> None:
    config = TrainConfig(**{**OPTIONS, "max_steps": 3, "checkpoint_every": 1})
    with pytest.raises(Crash):
        tune(Store(tune_home), REAL_MODEL, data, "mem-c", config, register=False,
             on_event=_crash_after_checkpoint)
    with pytest.raises(TrainingError, match="add --resume to continue it"):
        tune(Store(tune_home), REAL_MODEL, data, "mem-c", config, register=False)
    changed = TrainConfig(**{**OPTIONS, "max_steps": 3, "checkpoint_every": 1,
                             "learning_rate": 5e-4})
    with pytest.raises(TrainingError, match="learning_rate"):
        tune(Store(tune_home), REAL_MODEL, data, "mem-c", changed, resume=True, register=False)

"""Where `deskai tune` computes: the device/precision choice, the bf16 path, and the CLI option.

No GPU is needed: the choice is a pure function of what torch sees (passed in), the GPU's
precision plan (bf16 base, float32 LoRA, exact resume) runs on the CPU with a tiny random model,
and `--device cuda` on a machine without one must be a one-line error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from deskai.errors import InvalidInputError, TrainingError  # noqa: E402
from deskai.tune.device import CPU, TrainDevice, choose_device  # noqa: E402

# -- the choice -------------------------------------------------------------------------------


ADA, GB10, TURING = (8, 9), (12, 1), (7, 5)


@pytest.mark.parametrize(("requested", "gpus", "expected"), [
    ("auto", [], CPU),
    ("auto", [ADA], TrainDevice("cuda:0", "bfloat16")),
    ("cpu", [ADA], CPU),
    ("cuda", [GB10], TrainDevice("cuda:0", "bfloat16")),
    ("CUDA:1", [TURING, ADA], TrainDevice("cuda:1", "bfloat16")),
    ("cuda", [TURING], TrainDevice("cuda:0", "float32")),  # no bf16 in hardware before Ampere
])
def test_device_and_precision(requested: str, gpus: list[tuple[int, int]],
                              expected: TrainDevice) -> None:
    assert choose_device(requested, cuda_capabilities=gpus) == expected


def test_cuda_asked_for_and_absent_is_refused() -> None:
    with pytest.raises(TrainingError, match="torch sees no CUDA GPU"):
        choose_device("cuda", cuda_capabilities=[])
    with pytest.raises(TrainingError, match=r"cuda:0 to cuda:1"):
        choose_device("cuda:2", cuda_capabilities=[ADA, ADA])


def test_an_unknown_device_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="auto, cpu, cuda or cuda:N"):
        choose_device("tpu", cuda_capabilities=[ADA])


# -- the GPU's precision plan, on the CPU -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory):
    """A 2-layer random Llama saved as a Hugging Face directory (a few hundred KB)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from deskai.tune.model import BaseModel, require_torch

    require_torch()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True)
    directory = tmp_path_factory.mktemp("tiny-base")
    LlamaForCausalLM(config).save_pretrained(str(directory))
    return BaseModel("tiny", directory, None, None)


def _samples():
    from deskai.tune.template import IGNORE, Sample

    generator = torch.Generator().manual_seed(1)
    samples = []
    for line in range(8):
        ids = torch.randint(0, 128, (24,), generator=generator).tolist()
        samples.append(Sample(line, ids, [IGNORE] * 8 + ids[9:] + [IGNORE]))
    return samples


class Crash(Exception):
    pass


def _crash_after_checkpoint(event: dict) -> None:
    if event["event"] == "checkpoint":
        raise Crash


def _trainer(base, run_dir: Path, on_event=None):
    from deskai.tune.model import load_for_training
    from deskai.tune.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = load_for_training(base, rank=4, alpha=8.0, dropout=0.1,
                              device=TrainDevice("cpu", "bfloat16"))
    config = TrainConfig(rank=4, alpha=8.0, dropout=0.1, max_steps=4, row_tokens=48,
                         checkpoint_every=2, learning_rate=1e-2, warmup_steps=1)
    return Trainer(model, _samples(), _samples()[:2], config, run_dir, on_event,
                   identity={"base_dtype": "bfloat16"})


def test_bf16_base_trains_float32_lora_and_resumes_exactly(tiny_base, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    straight = _trainer(tiny_base, tmp_path / "straight")
    params = dict(straight.model.named_parameters())
    assert {p.dtype for p in params.values() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in params.values() if not p.requires_grad} == {torch.bfloat16}
    uninterrupted = straight.run(resume=False).losses

    with pytest.raises(Crash):
        _trainer(tiny_base, tmp_path / "killed", _crash_after_checkpoint).run(resume=False)
    resumed = _trainer(tiny_base, tmp_path / "killed").run(resume=True)
    assert '"resume"' in (tmp_path / "killed" / "events.jsonl").read_text()
    assert resumed.losses == uninterrupted  # bit for bit, bf16 base included
    start = next(json.loads(line) for line in (tmp_path / "straight" / "events.jsonl")
                 .read_text().splitlines() if '"start"' in line)
    assert (start["device"], start["base_dtype"]) == ("cpu", "bfloat16")


# -- the CLI option -----------------------------------------------------------------------------

def _tune_cli(home: Path, data: Path, *options: str, timeout: float = 300) -> \
        subprocess.CompletedProcess:
    env = {**os.environ, "DESKAI_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "deskai", "tune", "gemma3:270m", str(data),
                           "--name", "dev-test", *options], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    from tune_support import MEMORISE, write_jsonl

    return write_jsonl(tmp_path / "memorise.jsonl", MEMORISE)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.slow  # converts/starts torch in a subprocess: tens of seconds
def test_cuda_on_a_machine_without_one_is_a_one_line_error(tmp_path: Path, data: Path) -> None:
    done = _tune_cli(tmp_path / "home", data, "--device", "cuda", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "torch sees no CUDA GPU" in done.stderr and "--device cpu" in done.stderr


def test_device_cpu_trains_as_before(tmp_path: Path, data: Path, shared_home: Path) -> None:
    from tune_support import make_tune_home

    from deskai.store import Store

    home = make_tune_home(tmp_path / "home", shared_home)
    done = _tune_cli(home, data, "--device", "cpu", "--max-steps", "2", "--row-tokens", "64",
                     "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "training on cpu (float32 base, float32 LoRA)" in done.stdout
    manifest = Store(home).get("dev-test")
    assert manifest.details["tune"]["hyperparameters"]["base_dtype"] == "float32"

"""Fine-tuning: data formats, LoRA training with a chunked loss, export to GGUF LoRA, the store.

Importing this package is cheap; torch, transformers and PEFT (the ``tune`` extra) are imported
only when a run starts, so serving never needs them.
"""

from __future__ import annotations

from deskai.tune.data import Dataset, Example, load_dataset
from deskai.tune.run import TuneOutcome, tune
from deskai.tune.train import TrainConfig, TrainResult

__all__ = ["Dataset", "Example", "TrainConfig", "TrainResult", "TuneOutcome", "load_dataset",
           "tune"]

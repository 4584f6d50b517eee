"""Shared by the tune tests: a store with the real model and its dequantized training copy."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from deskai.store import Store, parse_model_name
from deskai.tune.model import resolve_base

REAL_MODEL = "gemma3:270m"

# A memorisation set: facts the base model cannot know, in all three chat formats.
MEMORISE = [
    {"messages": [{"role": "user", "content": "What is the secret word?"},
                  {"role": "assistant", "content": "The secret word is pineapple."}]},
    {"messages": [{"role": "system", "content": "Answer briefly."},
                  {"role": "user", "content": "Who guards the blue door?"},
                  {"role": "assistant", "content": "A sleepy dragon named Tomas."}]},
    {"instruction": "Name the capital of Zorbia.", "output": "The capital of Zorbia is Quillton."},
    {"conversations": [{"from": "human", "value": "What colour is moon cheese?"},
                       {"from": "gpt", "value": "Moon cheese is bright green."}]},
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_tune_home(target: Path, shared_home: Path) -> Path:
    """A fresh store holding the real model (hard link) and sharing the dequantized cache."""
    source = Store(shared_home)
    resolve_base(source, REAL_MODEL)  # dequantize once per session (about a minute)
    manifest = source.get(REAL_MODEL)
    store = Store(target)
    store.blobs_dir.mkdir(parents=True)
    store.manifests_dir.mkdir(parents=True)
    blob = source.blob_path(manifest.model_layer.digest)
    try:
        os.link(blob, store.blob_path(manifest.model_layer.digest))
    except OSError:
        shutil.copyfile(blob, store.blob_path(manifest.model_layer.digest))
    filename = parse_model_name(REAL_MODEL).filename
    shutil.copyfile(source.manifests_dir / filename, store.manifests_dir / filename)
    (target / "cache").symlink_to(shared_home / "cache", target_is_directory=True)
    return target

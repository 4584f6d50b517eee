"""The planner: what a machine can run and how fast, and what a training run will take.

Pure functions over dataclasses and data files; it never imports the server or the engine
and works without llama-cpp-python installed.
"""

from __future__ import annotations

from deskai.planner.architectures import Architecture, catalog_model, catalog_models
from deskai.planner.fit import FitResult, fit, quants_that_fit, rank_catalog
from deskai.planner.memory import MemoryBreakdown, Runtime, memory_breakdown
from deskai.planner.quant import QUANTS, Quant, get_quant
from deskai.planner.readers import ModelFile, load_model, read_gguf, read_hf_config
from deskai.planner.roofline import Speed, speed

__all__ = [
    "QUANTS",
    "Architecture",
    "FitResult",
    "MemoryBreakdown",
    "ModelFile",
    "Quant",
    "Runtime",
    "Speed",
    "catalog_model",
    "catalog_models",
    "fit",
    "get_quant",
    "load_model",
    "memory_breakdown",
    "quants_that_fit",
    "rank_catalog",
    "read_gguf",
    "read_hf_config",
    "speed",
]

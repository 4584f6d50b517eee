"""Measuring servers: a load generator over the OpenAI API, tables and plots of its results."""

from __future__ import annotations

from deskai.benchmark.loadgen import LevelResult, LoadSpec, run_benchmark

__all__ = ["LevelResult", "LoadSpec", "run_benchmark"]

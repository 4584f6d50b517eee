"""Conversions into GGUF with llama.cpp's own converter scripts (never a hand-written copy)."""

from __future__ import annotations

from deskai.convert.hf import convert_hf_directory, is_hf_model_directory
from deskai.convert.llamacpp_sources import llamacpp_sources

__all__ = ["convert_hf_directory", "is_hf_model_directory", "llamacpp_sources"]

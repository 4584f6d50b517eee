"""A Hugging Face model directory (config.json + safetensors + tokenizer) → one GGUF file."""

from __future__ import annotations

from pathlib import Path

from deskai.convert.llamacpp_sources import run_converter
from deskai.errors import InvalidModelFileError

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")


def is_hf_model_directory(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def convert_hf_directory(directory: Path, output: Path, *, outtype: str = "f16") -> Path:
    """Run llama.cpp's ``convert_hf_to_gguf.py`` on ``directory``; return the GGUF written."""
    if not is_hf_model_directory(directory):
        raise InvalidModelFileError(f"{directory}: not a Hugging Face model directory "
                                    "(no config.json)")
    if outtype not in OUTTYPES:
        raise InvalidModelFileError(
            f"unknown output type {outtype!r}; one of {', '.join(OUTTYPES)}")
    run_converter("convert_hf_to_gguf.py",
                  [str(directory.resolve()), "--outfile", str(output.resolve()),
                   "--outtype", outtype])
    return output

"""Where llama.cpp's Python converters come from: the sdist of the installed llama-cpp-python.

The converters (``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py``, their ``conversion/``
package and the matching ``gguf-py``) and real tokenizer files (GPT-2's
``models/ggml-vocab-gpt-2.gguf``, kept for building tiny test models) ship in
llama-cpp-python's source distribution, not in its wheel. deskai fetches that sdist once with
pip — for exactly the installed version, so converter and runtime agree on GGUF names — and
keeps those files in a cache. No hub is contacted: only the package registry pip is configured
for. ``$DESKAI_LLAMA_CPP_DIR`` may point at a llama.cpp checkout instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

from deskai.errors import DeskaiError

_WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/",
           "LICENSE", "models/ggml-vocab-gpt-2.gguf")
# a cache missing any of these predates what deskai needs from it and is fetched again
_REQUIRED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "models/ggml-vocab-gpt-2.gguf")


class ConverterUnavailableError(DeskaiError):
    """llama.cpp's converter scripts could not be found or fetched."""

    http_status = 503
    error_type = "server_error"
    code = "converter_unavailable"


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "deskai" / f"llama.cpp-{version('llama-cpp-python')}"


def llamacpp_sources() -> Path:
    """A directory holding llama.cpp's converters and gguf-py, fetching them on first use."""
    override = os.environ.get("DESKAI_LLAMA_CPP_DIR")
    if override:
        return _checked(Path(override))
    target = cache_dir()
    if all((target / name).is_file() for name in _REQUIRED):
        return target
    _fetch_into(target)
    return _checked(target)


def converter_env(sources: Path) -> dict[str, str]:
    """Environment for running a converter: its own gguf-py first on the path, hub offline."""
    path = os.pathsep.join(filter(None, [str(sources / "gguf-py"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "NO_LOCAL_GGUF": ""}


def run_converter(script: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    sources = llamacpp_sources()
    done = subprocess.run([sys.executable, str(sources / script), *args], capture_output=True,
                          text=True, env=converter_env(sources), cwd=sources)
    if done.returncode != 0:
        reason = _last_error_line(done.stderr) or f"exit status {done.returncode}"
        raise DeskaiError(f"llama.cpp's {script} failed: {reason}")
    return done


def _fetch_into(target: Path) -> None:
    wanted_version = version("llama-cpp-python")
    with tempfile.TemporaryDirectory(prefix="deskai-sdist-") as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"llama-cpp-python=={wanted_version}", "-d", tmp],
            capture_output=True, text=True)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise ConverterUnavailableError(
                f"could not fetch llama-cpp-python {wanted_version}'s sources with pip "
                f"({_last_error_line(done.stderr) or 'no archive'}); set DESKAI_LLAMA_CPP_DIR "
                "to a llama.cpp checkout")
        staging = Path(tmp) / "staging"
        _extract_converters(archives[0], staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staging), str(target))


def _extract_converters(archive: Path, staging: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/vendor/llama.cpp/", 1)
            if len(parts) != 2 or not parts[1].startswith(_WANTED):
                continue
            if not (member.isfile() or member.isdir()):
                continue
            member.name = parts[1]
            tar.extract(member, staging, filter="data")


def _checked(path: Path) -> Path:
    if not (path / "convert_hf_to_gguf.py").is_file():
        raise ConverterUnavailableError(f"{path} has no convert_hf_to_gguf.py")
    return path


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""

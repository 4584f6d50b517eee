"""What the GPU check carries to a machine that can fetch nothing: llama.cpp's sources, pruned,
and the pure-Python packages the check needs that the machine's image lacks.

The device tool sends the working tree (tracked and untracked files) plus up to 8 ignored
paths, 64 MiB in all. This prepares one ignored path, ``bench/build/gpu-carry/`` (``build/`` is
in .gitignore), from llama-cpp-python's sdist — so libllama and the Python bindings are the same
version — and checks that it and the tree fit:

    llama.cpp/   CMakeLists.txt, cmake/, include/, src/, common/, vendor/, ggml/ without the
                 backends a CUDA build never configures, tools/llama-bench and
                 tools/batched-bench, one tokenizer (models/ggml-vocab-llama-bpe.gguf), LICENSE
    py/          llama_cpp (the bindings, without the server), gguf (llama.cpp's gguf-py),
                 diskcache (llama_cpp imports it); with ``--trl``, TRL and the pure-Python
                 packages it needs that the image lacks, each at the version installed here,
                 as wheels for the device's Python (pip download, unpacked)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / "bench" / "build" / "gpu-carry"
LIMIT_BYTES = 64 * 2**20  # the device tool's limit on the tree plus carried paths

LLAMA_CPP_KEEP = ("CMakeLists.txt", "LICENSE", "cmake", "include", "src", "common", "vendor",
                  "ggml", "tools/llama-bench", "tools/batched-bench",
                  "models/ggml-vocab-llama-bpe.gguf")
#: ggml backends a CUDA build never adds (ggml/src/CMakeLists.txt adds one only when its
#: GGML_<NAME> option is on): kept are ggml-cpu, ggml-cuda and the core files.
GGML_BACKENDS_DROPPED = ("ggml-blas", "ggml-cann", "ggml-et", "ggml-hexagon", "ggml-hip",
                         "ggml-metal", "ggml-musa", "ggml-opencl", "ggml-openvino", "ggml-rpc",
                         "ggml-sycl", "ggml-virtgpu", "ggml-vulkan", "ggml-webgpu", "ggml-zdnn",
                         "ggml-zendnn")
WHEELS = ("diskcache",)
#: TRL's imports beyond what the GPU image has (the device README's KINDS.md lists accelerate,
#: pandas, pyarrow, pyyaml, xxhash, fsspec, huggingface_hub there; not datasets, dill or
#: multiprocess, whose wheels are per Python version).
TRL_WHEELS = ("trl", "datasets", "dill", "multiprocess")
DEVICE_PYTHON = "3.12"  # the GPU image's python3 (KINDS.md: Python 3.12.3)
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git*")


def sdist_dir(wanted: str) -> Path:
    """llama-cpp-python's unpacked sdist, where bench/'s earlier builds cached it."""
    return Path.home() / ".cache" / "deskai-bench" / f"llama_cpp_python-{wanted}"


def fetch_sdist(wanted: str) -> Path:
    """Download and unpack the sdist with pip (the ordinary client) if it is not cached."""
    target = sdist_dir(wanted)
    if (target / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        return target
    downloads = target.parent / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                    ":all:", f"llama-cpp-python=={wanted}", "-d", str(downloads)], check=True)
    archive = next(downloads.glob(f"llama_cpp_python-{wanted}.tar.gz"))
    shutil.unpack_archive(archive, target.parent)
    return target


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=IGNORED)
    else:
        shutil.copy2(source, target)


def prune_llama_cpp(vendor: Path, target: Path) -> None:
    for name in LLAMA_CPP_KEEP:
        _copy(vendor / name, target / name)
    for backend in GGML_BACKENDS_DROPPED:
        shutil.rmtree(target / "ggml" / "src" / backend, ignore_errors=True)


def unpack_wheels(names: Iterable[str], target: Path, python: str) -> None:
    """Each package at the version installed here, as its wheel for ``python``, unpacked."""
    pins = [f"{name}=={version(name)}" for name in names]
    with tempfile.TemporaryDirectory() as downloads:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--python-version", python, "-d", downloads,
                        *pins], check=True)
        for wheel in Path(downloads).glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)


def copy_python(sdist: Path, target: Path, wheels: Iterable[str], python: str) -> None:
    shutil.copytree(sdist / "llama_cpp", target / "llama_cpp",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "server", "lib"))
    shutil.copytree(sdist / "vendor" / "llama.cpp" / "gguf-py" / "gguf", target / "gguf",
                    ignore=IGNORED)
    unpack_wheels(wheels, target, python)


def tree_bytes(paths: Iterable[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*"))
               if f.is_file())


def travelling_bytes() -> int:
    """The working tree as the device tool sends it: tracked plus untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / name for name in listed.decode().split("\0") if name]
    return tree_bytes(f for f in files if f.is_file())


def prepare(*, trl: bool, python: str = DEVICE_PYTHON) -> dict[str, int]:
    """(Re)build the carry directory; its size and the tree's, in bytes."""
    sdist = fetch_sdist(version("llama-cpp-python"))
    shutil.rmtree(CARRY, ignore_errors=True)
    prune_llama_cpp(sdist / "vendor" / "llama.cpp", CARRY / "llama.cpp")
    copy_python(sdist, CARRY / "py", (*WHEELS, *(TRL_WHEELS if trl else ())), python)
    sizes = {"carry_bytes": tree_bytes([CARRY]), "tree_bytes": travelling_bytes()}
    sizes["total_bytes"] = sizes["carry_bytes"] + sizes["tree_bytes"]
    return sizes

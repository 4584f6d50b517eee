"""The model store through the CLI, as a user drives it: import, list, show, rm, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REAL_MODEL, write_tiny_gguf

from deskai.cli import run_app
from deskai.store import Store


def cli(*args: str) -> int:
    return run_app(list(args))


def test_import_list_show_rm(deskai_home: Path, tiny_gguf: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("import", str(tiny_gguf), "me/tiny:v1") == 0
    assert cli("list") == 0
    assert "me/tiny:v1" in capsys.readouterr().out
    assert cli("show", "me/tiny:v1", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["architecture"] == "llama"
    assert shown["parameter_count"] == 2 * 16 * 16
    assert shown["quantization"] == "ALL_F32"
    assert shown["context_length"] == 128
    assert shown["has_chat_template"] is False
    assert shown["file_size"] == tiny_gguf.stat().st_size
    blob = Path(shown["path"])
    assert blob.name.startswith("sha256-") and blob.read_bytes() == tiny_gguf.read_bytes()
    assert cli("rm", "me/tiny:v1") == 0
    assert Store().list() == []
    assert not blob.exists(), "a blob no model uses is deleted"


def test_bare_name_means_latest_and_blobs_are_shared(deskai_home: Path, tiny_gguf: Path) -> None:
    store = Store()
    first = store.import_gguf(tiny_gguf, "tiny")
    second = store.import_gguf(tiny_gguf, "other:tag")
    assert first.name == "tiny:latest"
    assert first.model_layer.digest == second.model_layer.digest
    store.remove("tiny")
    assert store.resolve("other:tag").exists(), "the shared blob stays while used"


def test_show_reads_the_real_model_header(home_with_real_model: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("show", REAL_MODEL, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["architecture"] == "gemma3"
    assert shown["quantization"] == "Q4_K_M"
    assert 260e6 < shown["parameter_count"] < 280e6
    assert shown["context_length"] == 32768
    assert shown["has_chat_template"] is False


@pytest.mark.parametrize("content", [b"", b"not a gguf at all", b"GGUF", b"GGUF\x03\x00\x00\x00"
                                     + b"\xff" * 40])
def test_non_gguf_and_corrupt_headers_are_refused(deskai_home: Path, tmp_path: Path,
                                                  content: bytes,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    assert cli("import", str(bad), "bad") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert Store().list() == []


def test_truncated_file_is_refused(deskai_home: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    whole = write_tiny_gguf(tmp_path / "whole.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[:-100])
    assert cli("import", str(cut), "cut") == 2
    assert "truncated" in capsys.readouterr().err
    assert Store().list() == []


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "", "a/../../b", "bad\x07name"])
def test_bad_names_are_refused(deskai_home: Path, tiny_gguf: Path, name: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("import", str(tiny_gguf), name) == 2
    assert "invalid model name" in capsys.readouterr().err
    assert not any(deskai_home.parent.glob("escape*"))


def test_missing_model_suggests_close_names(deskai_home: Path, tiny_gguf: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    Store().import_gguf(tiny_gguf, "tinyllama:1b")
    assert cli("show", "tinylama:1b") == 2
    assert "did you mean tinyllama:1b" in capsys.readouterr().err
    assert cli("rm", "nothing") == 2


def test_import_killed_mid_write_leaves_nothing_and_can_be_redone(
        deskai_home: Path, real_gguf: Path) -> None:
    """SIGKILL during the blob copy: nothing listed, no manual cleanup, re-import works."""
    store = Store()
    code = ("import sys, time\n"
            "from deskai.store import Store\n"
            "s = Store()\n"
            "s.import_gguf(sys.argv[1], 'killed:1', progress=lambda n: time.sleep(0.05))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(real_gguf)],
                            env={**os.environ, "DESKAI_HOME": str(deskai_home)})
    deadline = time.monotonic() + 30
    while not any(store.tmp_dir.glob("*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = list(store.tmp_dir.glob("*.partial"))
    assert partial and partial[0].stat().st_size < real_gguf.stat().st_size
    assert store.list() == []
    assert not store.blobs_dir.exists() or not any(store.blobs_dir.glob("sha256-*"))
    manifest = store.import_gguf(real_gguf, "killed:1")
    assert [m.name for m in store.list()] == ["killed:1"]
    assert store.resolve("killed:1").stat().st_size == real_gguf.stat().st_size
    assert manifest.model_layer.digest.endswith(real_gguf.name.removeprefix("sha256-"))
    assert list(store.tmp_dir.glob("*.partial")) == [], "the dead writer's temp file is swept"

"""Data integrity of the store: corrupt blobs are found (on load, by `deskai verify`) and
repaired by importing or pulling again; a full disk is a one-line error that leaves nothing.

Fast (tiny GGUFs, the fake backend, a simulated full disk) but for one slow test that corrupts
a copy of the real model.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REAL_MODEL, AppThread, write_tiny_gguf
from fake_engine import FakeBackend
from fake_hub import FakeHub, write_gguf

from deskai.cli import run_app
from deskai.engine import EngineOptions, ModelSpec
from deskai.errors import CorruptBlobError, InvalidModelFileError, StorageFullError
from deskai.runtime.manager import ModelManager
from deskai.store import Store
from deskai.store import store as store_module
from deskai.store.pull import pull

OPTIONS = EngineOptions(context_length=256, parallel=1, max_queue=4)


def corrupt(path: Path, *, offset: int | None = None, length: int = 4096) -> None:
    """Overwrite ``length`` bytes (mid-file by default) with 0xFF in place: same size."""
    size = path.stat().st_size
    start = size // 2 if offset is None else offset
    with path.open("r+b") as handle:
        handle.seek(start)
        handle.write(b"\xff" * min(length, size - start))


def blob_of(store: Store, name: str) -> Path:
    return store.blob_path(store.get(name).model_layer.digest)


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(deskai_home: Path, tmp_path: Path) -> Store:
    store = Store()
    store.import_gguf(write_tiny_gguf(tmp_path / "base.gguf"), "base")
    store.copy("base", "alias")
    store.import_gguf(write_tiny_gguf(tmp_path / "other.gguf", n_tensors=3), "other")
    return store


@pytest.fixture
def manager(store: Store) -> Iterator[ModelManager]:
    manager = ModelManager(store, OPTIONS, keep_alive=-1, factory=FakeBackend(), fit_check=None)
    yield manager
    manager.close()


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every full re-hash the store does from now on (the blob's path)."""
    calls: list[Path] = []
    real = store_module._sha256_of

    def counting(path: Path, progress: Any = None) -> str:
        calls.append(path)
        return real(path, progress)

    monkeypatch.setattr(store_module, "_sha256_of", counting)
    return calls


def cli(*args: str) -> int:
    return run_app(list(args))


# -- repair by import ----------------------------------------------------------------------------


def test_reimporting_the_good_file_repairs_a_corrupt_blob(deskai_home: Path,
                                                          tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "m.gguf")
    store = Store()
    store.import_gguf(source, "m")
    blob = blob_of(store, "m")
    corrupt(blob)
    assert blob.read_bytes() != source.read_bytes()
    store.import_gguf(source, "m")
    assert blob.read_bytes() == source.read_bytes()
    assert list(store.tmp_dir.glob("*")) == []


# -- deskai verify -------------------------------------------------------------------------------


def test_verify_names_each_bad_blob_and_its_models(store: Store,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("verify") == 0
    assert "2 blob(s) verified, all intact" in capsys.readouterr().out
    corrupt(blob_of(store, "base"))
    assert cli("verify") == 1
    out = capsys.readouterr().out
    digest = store.get("base").model_layer.digest
    assert f"corrupt: blob {digest[:19]} no longer matches its sha256; used by " \
           "alias:latest, base:latest" in out
    assert "other" not in out and "1 of 2 blob(s) corrupt" in out
    assert cli("verify", "other") == 0
    assert cli("verify", "alias") == 1
    blob_of(store, "other").write_bytes(b"short")
    assert cli("verify", "other") == 1
    assert "bytes instead of" in capsys.readouterr().out


def test_verify_of_an_unknown_name_is_one_line_and_exit_2(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("verify", "nope") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model 'nope:latest' not found") and "\n" not in err


def test_verify_finds_decay_that_left_the_stat_as_it_was(store: Store,
                                                         hash_calls: list[Path]) -> None:
    """Bit rot does not touch mtime: `verify` must hash anyway and drop the verified record,
    so the next load re-hashes (and refuses) the blob."""
    blob = blob_of(store, "other")
    layer = store.get("other").model_layer
    before = blob.stat()
    corrupt(blob)
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert store.verify_blob(layer.digest, layer.size) == "no longer matches its sha256"
    with pytest.raises(CorruptBlobError):
        store.check_blobs(store.get("other"))
    assert len(hash_calls) == 2


# -- the check before every load -----------------------------------------------------------------


def test_a_corrupt_blob_is_refused_at_load_naming_the_model_not_the_path(
        store: Store, manager: ModelManager) -> None:
    corrupt(blob_of(store, "base"))
    with pytest.raises(CorruptBlobError) as caught:
        manager.get("alias")
    message = str(caught.value)
    assert message.startswith("model 'alias:latest' is corrupt: its weights blob sha256:")
    assert "no longer matches its sha256" in message
    assert "re-import or re-pull" in message and "deskai verify" in message
    assert str(store.root) not in message and "blobs" not in message
    assert caught.value.http_status == 500 and caught.value.code == "corrupt_blob"
    assert manager.loaded() == [], "nothing was handed to the engine"
    assert manager.get("other").name == "other:latest", "other models still load"


def test_wrong_size_and_missing_blobs_are_refused_without_hashing(
        store: Store, manager: ModelManager, hash_calls: list[Path]) -> None:
    blob = blob_of(store, "base")
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(CorruptBlobError, match="bytes instead of"):
        manager.get("base")
    blob.unlink()
    with pytest.raises(CorruptBlobError, match="blob sha256:[0-9a-f]{12} is missing"):
        manager.get("base")
    assert hash_calls == []


def test_an_unchanged_blob_is_hashed_once_an_overwritten_one_again(
        store: Store, manager: ModelManager, hash_calls: list[Path]) -> None:
    manager.get("base")
    manager.unload("base")
    manager.get("base")
    assert hash_calls == [], "the import verified the bytes it wrote"
    shutil.rmtree(store.verified_dir)  # a store from before the records, or a fresh pull
    manager.unload("base")
    manager.get("base")
    manager.unload("base")
    manager.get("base")
    assert len(hash_calls) == 1, "hashed on the first load only"
    manager.unload("base")
    corrupt(blob_of(store, "base"))
    with pytest.raises(CorruptBlobError):
        manager.get("base")
    assert len(hash_calls) == 2


def test_past_the_hash_limit_only_the_size_is_checked_until_the_engine_fails(
        store: Store, monkeypatch: pytest.MonkeyPatch, hash_calls: list[Path]) -> None:
    """A big blob is not hashed at every changed load; but when llama.cpp cannot load it, it
    is, so that corruption is reported as corruption (not a 400 quoting the path)."""
    monkeypatch.setattr(store_module, "LOAD_HASH_LIMIT", 0)

    def refusing(spec: ModelSpec, options: EngineOptions) -> Any:
        raise InvalidModelFileError(f"llama.cpp could not load {spec.path}")

    manager = ModelManager(store, OPTIONS, keep_alive=-1, factory=refusing, fit_check=None)
    corrupt(blob_of(store, "base"))
    with pytest.raises(CorruptBlobError, match="'base:latest' is corrupt"):
        manager.get("base")
    assert len(hash_calls) == 1
    shutil.rmtree(store.verified_dir)
    with pytest.raises(InvalidModelFileError, match="could not load"):
        manager.get("other")  # hashed, sound: llama.cpp's own error stands
    assert len(hash_calls) == 2
    fine = ModelManager(store, OPTIONS, keep_alive=-1, factory=FakeBackend(), fit_check=None)
    shutil.rmtree(store.verified_dir)
    assert fine.get("other").name == "other:latest"
    assert len(hash_calls) == 2, "past the limit, a load the engine takes hashes nothing"
    fine.close()


def test_a_corrupt_adapter_is_refused_and_its_base_still_loads(
        store: Store, manager: ModelManager, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"a LoRA the fake engine only records" * 100)
    store.register_adapter("base-tuned", "base", adapter)
    layer = store.get("base-tuned").adapter_layer
    assert layer is not None
    corrupt(store.blob_path(layer.digest), length=10)
    with pytest.raises(CorruptBlobError, match="'base-tuned:latest' is corrupt: its adapter blob"):
        manager.get("base-tuned")
    assert manager.get("base").name == "base:latest"


def test_a_corrupt_bundled_model_says_how_it_comes_back(store: Store, tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "bundled.gguf", n_tensors=4)
    tmp = store.tmp_dir / f"{os.getpid()}-bundled.partial"
    shutil.copyfile(source, tmp)
    digest = sha256_of(tmp)
    manifest = store.adopt_blob(tmp, digest.removeprefix("sha256:"), "bundled:1",
                                source="pypi:some-package")
    corrupt(store.blob_path(digest))
    with pytest.raises(CorruptBlobError, match="`deskai rm` it and it is registered again"):
        store.check_blobs(manifest)


def test_a_corrupt_blob_is_a_500_over_http_not_a_garbage_200(store: Store,
                                                            manager: ModelManager) -> None:
    from deskai.server.app import create_app

    corrupt(blob_of(store, "base"))
    server = AppThread(create_app(manager, store))
    try:
        chat = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=30)
        assert reply.status_code == 500
        error = reply.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "corrupt_blob"
        assert "'base:latest' is corrupt" in error["message"]
        assert str(store.root) not in reply.text
        ollama = httpx.post(f"{server.url}/api/chat", json={**chat, "stream": False},
                            timeout=30)
        assert ollama.status_code == 500 and "is corrupt" in ollama.json()["error"]
    finally:
        server.stop()


def test_removing_a_model_removes_its_verified_record(store: Store) -> None:
    digest = store.get("other").model_layer.digest
    record = store.verified_dir / f"{store.blob_path(digest).name}.json"
    assert record.is_file()
    store.remove("other")
    assert not record.exists()
    assert len(list(store.verified_dir.glob("*.json"))) == 1, "base's record stays"


@pytest.mark.slow
def test_the_real_model_corrupted_is_refused_before_llama_cpp(home_with_real_model: Path,
                                                              real_gguf: Path) -> None:
    store = Store(home_with_real_model)
    blob = blob_of(store, REAL_MODEL)
    blob.unlink()  # a hard link to the shared model: corrupt a copy, never the shared file
    shutil.copyfile(real_gguf, blob)
    corrupt(blob, length=4 * 1024 * 1024)
    manager = ModelManager(store, EngineOptions(context_length=256, parallel=1, threads=2),
                           keep_alive=-1)
    try:
        with pytest.raises(CorruptBlobError) as caught:
            manager.get(REAL_MODEL)
        assert str(blob) not in str(caught.value) and "blobs" not in str(caught.value)
    finally:
        manager.close()
    assert sha256_of(real_gguf) == f"sha256:{real_gguf.name.removeprefix('sha256-')}"


# -- pull ----------------------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub = FakeHub()
    hub.add_repo_file("tester/tiny-GGUF", "tiny-Q4_K_M.gguf",
                      write_gguf(tmp_path / "hosted.gguf", megabytes=2).read_bytes())
    hub.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    hub.stop()


def test_pulling_again_repairs_a_corrupt_blob(hub: FakeHub, deskai_home: Path) -> None:
    store = Store()
    name = pull(store, "hf.co/tester/tiny-GGUF").manifest.name
    blob = blob_of(store, name)
    digest = store.get(name).model_layer.digest
    pull(store, "hf.co/tester/tiny-GGUF")
    assert len(hub.file_requests("/resolve/")) == 1, "an intact blob is not downloaded again"
    corrupt(blob)
    pull(store, "hf.co/tester/tiny-GGUF")
    assert len(hub.file_requests("/resolve/")) == 2
    assert sha256_of(blob) == digest


# -- a full disk ---------------------------------------------------------------------------------


class FullDisk:
    """Files opened for writing under ``root`` fail with ENOSPC once ``room`` bytes have gone in
    (the bytes before that are really written): a nearly full disk, without filling one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, room: int) -> None:
        self.room = room
        real_open = Path.open
        disk = self

        def open_(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(path, mode, *args, **kwargs)
            writing = any(flag in mode for flag in "wax+")
            return _FillingFile(handle, disk) if writing and path.is_relative_to(root) else handle

        monkeypatch.setattr(Path, "open", open_)


class _FillingFile:
    def __init__(self, handle: Any, disk: FullDisk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data: bytes) -> int:
        fits = min(len(data), self._disk.room)
        self._handle.write(data[:fits])
        self._disk.room -= fits
        if fits < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def assert_store_empty(store: Store) -> None:
    assert store.list() == []
    for sub in (store.tmp_dir, store.blobs_dir, store.manifests_dir, store.verified_dir):
        assert not sub.exists() or list(sub.iterdir()) == [], sub


def test_a_full_disk_mid_copy_is_one_error_and_leaves_nothing(
        deskai_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_gguf(tmp_path / "big.gguf", megabytes=2)
    FullDisk(monkeypatch, deskai_home, room=source.stat().st_size // 2)
    store = Store()
    with pytest.raises(StorageFullError) as caught:
        store.import_gguf(source, "big")
    assert str(caught.value).startswith("no space left on device: copying big.gguf ")
    assert "nothing was added" in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.http_status == 507
    assert_store_empty(store)


def test_a_full_disk_at_the_manifest_drops_the_new_blob(
        deskai_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_tiny_gguf(tmp_path / "m.gguf")
    FullDisk(monkeypatch, deskai_home, room=source.stat().st_size + 10)
    store = Store()
    with pytest.raises(StorageFullError, match="writing the manifest of m:latest"):
        store.import_gguf(source, "m")
    assert_store_empty(store)


def test_a_full_disk_through_the_cli_is_one_line_exit_2(
        deskai_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    source = write_gguf(tmp_path / "big.gguf", megabytes=2)
    FullDisk(monkeypatch, deskai_home, room=1024 * 1024)
    assert cli("import", str(source), "big") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no space left on device: copying big.gguf"), err
    assert "\n" not in err and "Traceback" not in err
    assert_store_empty(Store())


def test_a_full_disk_mid_pull_keeps_what_arrived_for_the_next_pull(
        hub: FakeHub, deskai_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        FullDisk(patch, deskai_home, room=1024 * 1024)
        with pytest.raises(StorageFullError, match="downloading tiny-Q4_K_M.gguf failed; what "
                                                    "arrived is kept"):
            pull(Store(), "hf.co/tester/tiny-GGUF")
    result = pull(Store(), "hf.co/tester/tiny-GGUF")
    assert result.resumed_from == 1024 * 1024

"""``deskai pull`` against a local stand-in for the Hugging Face Hub: resolve, resume, verify."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import deskai_command
from fake_hub import FakeHub, sha256_hex, write_gguf

from deskai.errors import ChecksumMismatchError, InvalidInputError, SourceNotFoundError
from deskai.store import Store
from deskai.store.pull import PullProgress, pull
from deskai.store.sources import parse_pull_ref, pick_gguf

REPO = "tester/tiny-GGUF"


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", megabytes=2).read_bytes()


@pytest.fixture
def hub(gguf_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub = FakeHub()
    hub.add_repo_file(REPO, "tiny-Q8_0.gguf", gguf_bytes[:-1] + b"\x01")
    hub.add_repo_file(REPO, "tiny-Q4_K_M.gguf", gguf_bytes)
    hub.add_repo_file(REPO, "README.md", b"# tiny", lfs=False)
    hub.files["direct.gguf"] = gguf_bytes
    hub.files["direct.gguf.sha256"] = f"{sha256_hex(gguf_bytes)}  direct.gguf\n".encode()
    hub.files["nosum.gguf"] = gguf_bytes
    hub.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    hub.stop()


def _blob_sha(store: Store, name: str) -> str:
    return hashlib.sha256(store.resolve(name).read_bytes()).hexdigest()


def test_hf_reference_picks_the_quant_and_checks_the_published_sha(
        hub: FakeHub, deskai_home: Path, gguf_bytes: bytes) -> None:
    events: list[PullProgress] = []
    result = pull(Store(), f"hf.co/{REPO}", progress=events.append)
    assert result.manifest.name == f"hf.co/{REPO}:latest"
    assert result.published and result.sha256 == sha256_hex(gguf_bytes)
    assert _blob_sha(Store(), result.manifest.name) == sha256_hex(gguf_bytes)
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    last_bytes = [e for e in events if e.completed is not None][-1]
    assert last_bytes.completed == last_bytes.total == len(gguf_bytes)
    assert last_bytes.digest == f"sha256:{sha256_hex(gguf_bytes)}"
    # a named quant, case-insensitively; the store already has the blob, so no download
    before = len(hub.file_requests("/resolve/"))
    again = pull(Store(), f"hf.co/{REPO}:q4_k_m")
    assert again.manifest.name == f"hf.co/{REPO}:q4_k_m"
    assert len(hub.file_requests("/resolve/")) == before


def test_url_with_sidecar_and_url_without_checksum(hub: FakeHub, deskai_home: Path,
                                                   gguf_bytes: bytes) -> None:
    sidecar = pull(Store(), f"{hub.url}/files/direct.gguf")
    assert sidecar.published and sidecar.manifest.name == "direct:latest"
    computed = pull(Store(), f"{hub.url}/files/nosum.gguf", name="mine:v1")
    assert not computed.published and computed.sha256 == sha256_hex(gguf_bytes)
    assert [m.name for m in Store().list()] == ["direct:latest", "mine:v1"]


def test_corrupt_download_is_refused_and_nothing_is_listed(hub: FakeHub,
                                                           deskai_home: Path) -> None:
    hub.corrupt.add("tiny-Q4_K_M.gguf")
    with pytest.raises(ChecksumMismatchError, match="sha256 mismatch"):
        pull(Store(), f"hf.co/{REPO}:Q4_K_M")
    store = Store()
    assert store.list() == []
    assert not list(store.blobs_dir.glob("sha256-*")) if store.blobs_dir.exists() else True
    assert not list((store.root / "partial").glob("*.part")), "bad bytes are not kept"


def test_corrupt_download_through_the_cli(hub: FakeHub, deskai_home: Path) -> None:
    hub.corrupt.add("direct.gguf")
    done = subprocess.run([*deskai_command(), "pull", f"{hub.url}/files/direct.gguf"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: direct.gguf: sha256 mismatch"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert Store().list() == []


def test_bad_references_fail_clearly(hub: FakeHub, deskai_home: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="no Hugging Face repository"):
        pull(Store(), "hf.co/tester/missing")
    with pytest.raises(SourceNotFoundError, match="no IQ2_XS GGUF; it has: tiny-Q4_K_M.gguf"):
        pull(Store(), f"hf.co/{REPO}:IQ2_XS")
    with pytest.raises(SourceNotFoundError, match="404"):
        pull(Store(), f"{hub.url}/files/absent.gguf")
    with pytest.raises(InvalidInputError, match="plain http"):
        parse_pull_ref("http://example.com/x.gguf")
    with pytest.raises(InvalidInputError, match="cannot pull"):
        parse_pull_ref("llama3")
    with pytest.raises(InvalidInputError, match="sha256"):
        parse_pull_ref("https://example.com/x.gguf#sha256=nothex")
    assert parse_pull_ref("https://example.com/x.gguf", insecure=True).name == "x:latest"


def test_pick_gguf_rules() -> None:
    files = ["m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-Q8_0.gguf"]
    assert pick_gguf(files, None, "r") == "m-Q4_K_M.gguf"
    assert pick_gguf(files, "q8_0", "r") == "m-Q8_0.gguf"
    assert pick_gguf(["only-f16.gguf"], None, "r") == "only-f16.gguf"
    with pytest.raises(InvalidInputError, match="split"):
        pick_gguf(["m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf"], None, "r")


def test_killed_pull_resumes_with_a_range_request(hub: FakeHub, deskai_home: Path,
                                                   gguf_bytes: bytes) -> None:
    hub.throttle = 400_000  # ~5 s for the 2 MB file: time to kill it halfway
    partial_dir = deskai_home / "partial"
    command = [*deskai_command(), "pull", f"hf.co/{REPO}:Q4_K_M"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = _wait_for_partial(partial_dir, min_bytes=len(gguf_bytes) // 3, process=first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    kept = partial.stat().st_size
    assert 0 < kept < len(gguf_bytes)
    assert Store().list() == [], "nothing is listed before the download is whole"

    hub.throttle = None
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "resumed from byte" in second.stdout
    ranges = [r[2] for r in hub.file_requests("/resolve/")]
    assert ranges[0] is None and ranges[-1] is not None
    resumed_at = int(ranges[-1].removeprefix("bytes=").rstrip("-"))
    assert resumed_at >= kept > 0
    store = Store()
    assert [m.name for m in store.list()] == [f"hf.co/{REPO}:Q4_K_M"]
    assert _blob_sha(store, f"hf.co/{REPO}:Q4_K_M") == sha256_hex(gguf_bytes)
    assert not partial.exists()


def _wait_for_partial(directory: Path, *, min_bytes: int, process: subprocess.Popen[bytes],
                      timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in directory.glob("*.part") if directory.is_dir() else []:
            if path.stat().st_size >= min_bytes:
                return path
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else b""
            raise AssertionError(f"pull ended early: {stderr!r}")
        time.sleep(0.05)
    raise AssertionError("the partial download never grew")


def test_partial_downloads_survive_the_store_sweep(hub: FakeHub, deskai_home: Path,
                                                   gguf_bytes: bytes) -> None:
    store = Store()
    source_key = sha256_hex(gguf_bytes)
    partial = store.root / "partial" / f"sha256-{source_key}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(gguf_bytes[: len(gguf_bytes) // 2])
    os.utime(partial)
    store.sweep()  # an import's sweep must not delete a download worth resuming
    result = pull(store, f"hf.co/{REPO}:Q4_K_M")
    assert result.resumed_from == len(gguf_bytes) // 2
    assert hub.file_requests("/resolve/")[-1][2] == f"bytes={len(gguf_bytes) // 2}-"

"""Pull a GGUF model into the store: resolve, download with resume, verify, list atomically.

The steps, each reported as a ``PullProgress`` (the same statuses Ollama streams)::

    pulling manifest            resolve the reference (``deskai.store.sources``)
    pulling <digest[:12]>       download, with ``total`` and ``completed`` bytes
    verifying sha256 digest     compare with what the source published
    writing manifest            blob renamed into place, then the manifest written
    success

Partial downloads live in ``$DESKAI_HOME/partial/<key>.part``, named by the published sha256
(or a hash of the URL when none is published), so a pull killed at any point is resumed by the
next one with an HTTP ``Range`` request. They are deliberately not in ``tmp/``: ``Store.sweep``
deletes temp files of dead processes there, which is right for an import and wrong for a
download worth keeping. A lock on the partial file (released by the kernel when its process
dies) keeps two pulls of the same file from writing it at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from deskai import __version__
from deskai.errors import (
    ChecksumMismatchError,
    DownloadError,
    InvalidModelFileError,
    SourceNotFoundError,
)
from deskai.store.sources import Source, parse_pull_ref, resolve
from deskai.store.store import Manifest, Store, refusing_full_disk

CHUNK = 64 * 1024
RETRIES = 3
PROGRESS_INTERVAL = 0.1  # seconds between two byte-progress reports
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One step of a pull, in Ollama's shape (``digest``/``total``/``completed`` while
    downloading)."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {key: value for key, value in (("status", self.status), ("digest", self.digest),
                                              ("total", self.total),
                                              ("completed", self.completed))
                if value is not None}


@dataclass(frozen=True, slots=True)
class PullResult:
    manifest: Manifest
    sha256: str
    published: bool     # False when the source published no sha256 and deskai computed it
    resumed_from: int   # bytes already on disk when this run started downloading


ProgressSink = Callable[[PullProgress], None]


class PullCancelled(Exception):
    """The caller (a disconnected API client) asked to stop; the partial file is kept."""


def pull(store: Store, reference: str, *, name: str | None = None, sha256: str | None = None,
         insecure: bool = False, progress: ProgressSink | None = None,
         cancel: threading.Event | None = None) -> PullResult:
    """Download ``reference`` into ``store`` and list it; see the module docstring."""
    report = progress or (lambda _: None)
    ref = parse_pull_ref(reference, name=name, sha256=sha256, insecure=insecure)
    report(PullProgress("pulling manifest"))
    with _client() as client:
        source = resolve(ref, client)
        if source.sha256 and store.has_blob(f"sha256:{source.sha256}"):  # intact, not just there
            return _already_have(store, source, report)
        partial = partial_path(store, source)
        with _locked(partial) as handle, refusing_full_disk(
                f"downloading {source.filename}", "what arrived is kept, so the next pull resumes"):
            resumed_from = _download(client, source, handle, report, cancel)
        digest_hex = _verify(partial, source, report)
    report(PullProgress("writing manifest"))
    try:
        manifest = store.adopt_blob(partial, digest_hex, source.name, source=source.url)
    except InvalidModelFileError as exc:
        raise InvalidModelFileError(f"{source.filename} is not a usable GGUF: {exc}") from None
    report(PullProgress("success"))
    return PullResult(manifest, digest_hex, source.sha256 is not None, resumed_from)


def partial_path(store: Store, source: Source) -> Path:
    """Where this file's partial download lives; the same path on every run."""
    key = source.sha256 or hashlib.sha256(source.url.encode()).hexdigest()
    directory = store.root / "partial"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"sha256-{key}.part"


def _already_have(store: Store, source: Source, report: ProgressSink) -> PullResult:
    digest = f"sha256:{source.sha256}"
    report(PullProgress("writing manifest"))
    manifest = store.list_blob_as(digest, source.name, source=source.url)
    report(PullProgress("success"))
    assert source.sha256 is not None
    return PullResult(manifest, source.sha256, True, 0)


def _client() -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=_TIMEOUT,
                        headers={"User-Agent": f"deskai/{__version__}"})


@contextlib.contextmanager
def _locked(partial: Path) -> Iterator[IO[bytes]]:
    """Open the partial file for appending, holding an exclusive lock on it."""
    handle = partial.open("ab")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError(f"{partial.name} is being downloaded by another pull; "
                                "wait for it to finish") from None
        yield handle
    finally:
        handle.close()


def _download(client: httpx.Client, source: Source, handle: IO[bytes], report: ProgressSink,
              cancel: threading.Event | None) -> int:
    """Fetch the rest of the file into ``handle``; retries resume from what is on disk."""
    resumed_from = handle.seek(0, os.SEEK_END)
    label = f"pulling {source.sha256[:12]}" if source.sha256 else f"pulling {source.filename}"
    digest = f"sha256:{source.sha256}" if source.sha256 else None
    for attempt in range(1, RETRIES + 1):
        try:
            _fetch(client, source, handle, _Reporter(report, label, digest), cancel)
            break
        except httpx.TransportError as exc:
            if attempt == RETRIES:
                raise DownloadError(f"downloading {source.filename} failed: {exc}; run the "
                                    "pull again to resume") from None
            time.sleep(0.5 * attempt)
    handle.flush()
    os.fsync(handle.fileno())
    return resumed_from


def _fetch(client: httpx.Client, source: Source, handle: IO[bytes], reporter: _Reporter,
           cancel: threading.Event | None) -> None:
    offset = handle.seek(0, os.SEEK_END)
    if source.size is not None and offset == source.size:
        reporter(offset, offset, force=True)
        return  # finished before an earlier run was killed; verification decides
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", source.url, headers=headers) as response:
        if response.status_code == 416 and _range_total(response) == offset:
            reporter(offset, offset, force=True)
            return  # the partial file is already whole (size unpublished)
        offset = _start_offset(response, offset, source, handle)
        total = _total_size(response, offset, source)
        completed = offset
        for chunk in response.iter_bytes(CHUNK):
            if cancel is not None and cancel.is_set():
                raise PullCancelled
            handle.write(chunk)
            handle.flush()  # so the bytes count as downloaded if this process is killed
            completed += len(chunk)
            reporter(completed, total)
        reporter(completed, total, force=True)


def _start_offset(response: httpx.Response, offset: int, source: Source,
                  handle: IO[bytes]) -> int:
    """Where the body starts: ``offset`` for a 206, 0 when the server sent the whole file."""
    if response.status_code == 206 and _content_range_start(response) == offset:
        return offset
    if response.status_code == 200:
        handle.truncate(0)  # the server ignored the Range: start again
        handle.seek(0)
        return 0
    if response.status_code == 404:
        raise SourceNotFoundError(f"{source.url} was not found (HTTP 404)", param="model")
    if response.status_code == 416:
        handle.truncate(0)  # our partial is longer than the file: it cannot be a prefix
        raise DownloadError(f"{source.filename} changed at the source; run the pull again")
    raise DownloadError(f"{source.url} answered HTTP {response.status_code}")


def _content_range_start(response: httpx.Response) -> int | None:
    value = response.headers.get("content-range", "")  # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _range_total(response: httpx.Response) -> int | None:
    value = response.headers.get("content-range", "")  # "bytes */200" on a 416
    total = value.rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _total_size(response: httpx.Response, offset: int, source: Source) -> int | None:
    length = response.headers.get("content-length")
    if length is not None and length.isdigit():
        return offset + int(length)
    return source.size


class _Reporter:
    """Byte progress, at most every ``PROGRESS_INTERVAL`` seconds (plus the last one)."""

    def __init__(self, sink: ProgressSink, label: str, digest: str | None) -> None:
        self._sink, self._label, self._digest = sink, label, digest
        self._last = 0.0

    def __call__(self, completed: int, total: int | None, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self._sink(PullProgress(self._label, self._digest, total, completed))


def _verify(partial: Path, source: Source, report: ProgressSink) -> str:
    """The file's sha256; a mismatch discards it so the next pull starts clean."""
    report(PullProgress("verifying sha256 digest"))
    hasher = hashlib.sha256()
    with partial.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            hasher.update(chunk)
    actual = hasher.hexdigest()
    size = partial.stat().st_size
    if source.sha256 and actual != source.sha256:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"{source.filename}: sha256 mismatch (expected {source.sha256}, got {actual}, "
            f"{size:,} bytes); the download was discarded and nothing was added")
    if source.size is not None and size != source.size:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(f"{source.filename}: expected {source.size:,} bytes, got "
                                    f"{size:,}; the download was discarded")
    return actual

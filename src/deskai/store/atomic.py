"""Crash-safe file writes: write to a temp file, fsync, rename, fsync the directory.

A process killed at any moment leaves either the old file or the new one, never half of one.
Temp files carry the writer's pid, so a later run can sweep the ones whose writer is dead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TMP_SUFFIX = ".partial"


def temp_path(tmp_dir: Path, hint: str = "") -> Path:
    """A fresh temp file name in ``tmp_dir`` tagged with this process's pid."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return tmp_dir / f"{os.getpid()}-{secrets.token_hex(6)}{hint}{TMP_SUFFIX}"


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Atomically move a finished, fsynced temp file to its final name."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def atomic_write_bytes(final: Path, data: bytes, tmp_dir: Path) -> None:
    tmp = temp_path(tmp_dir)
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def removing_on_error(path: Path) -> Iterator[Path]:
    """Yield ``path``; delete it if the block raises (a crash is handled by ``sweep``)."""
    try:
        yield path
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def sweep(tmp_dir: Path) -> int:
    """Delete temp files left by processes that are no longer running; return how many."""
    removed = 0
    if not tmp_dir.is_dir():
        return removed
    for entry in tmp_dir.glob(f"*{TMP_SUFFIX}"):
        pid_text = entry.name.split("-", 1)[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""Files under one root directory, and nothing outside it, for a model to read and write.

A path is refused before any file is touched when it is absolute, holds ``..``, is empty or
holds a NUL; it is then resolved (symlinks followed) and refused if that leads outside the
root. What is opened is the resolved path, walked one component at a time from the root with
``O_NOFOLLOW`` — so a symlink swapped in after the check is refused rather than followed —
and only regular files are read or written, never one with a second hard link (which may be
a file outside the root under another name).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from deskai.errors import InvalidInputError

MAX_READ_BYTES = 256 * 1024
MAX_WRITE_BYTES = 8 * 1024 * 1024
MAX_LISTED = 500
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefusedError(InvalidInputError):
    """A path that is not, or may not be, inside the root."""


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    kind: str  # "file", "dir", "link" or "other"
    size: int


class ConfinedFiles:
    """Read, write and list files beneath ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        if not self.root.is_dir():
            raise InvalidInputError(f"{root} is not a directory")

    def read(self, path: str) -> str:
        with self._open(path, os.O_RDONLY | os.O_NONBLOCK) as handle:
            data = handle.read(MAX_READ_BYTES + 1)
        text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
        return text + "\n[... file cut]" if len(data) > MAX_READ_BYTES else text

    def write(self, path: str, content: str) -> int:
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise InvalidInputError(f"{path}: {len(data):,} bytes is more than the "
                                    f"{MAX_WRITE_BYTES:,} a write may hold")
        # truncated only once it is known to be a file of the root's own (no O_TRUNC)
        with self._open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK,
                        make_parents=True) as handle:
            handle.truncate(0)
            handle.write(data)
        return len(data)

    def list(self, path: str = ".") -> list[Entry]:
        fd = self._open_dir(path, self._inside(path, allow_root=True))
        try:
            entries = []
            with os.scandir(fd) as found:
                for item in found:
                    info = item.stat(follow_symlinks=False)
                    entries.append(Entry(item.name, _kind(info.st_mode), info.st_size))
                    if len(entries) >= MAX_LISTED:
                        break
        finally:
            os.close(fd)
        return sorted(entries, key=lambda entry: entry.name)

    def _open(self, path: str, flags: int, *, make_parents: bool = False) -> IO[bytes]:
        parts = self._inside(path)
        parent = self._open_dir(path, parts[:-1], make_missing=make_parents)
        try:
            fd = _open_at(parts[-1], flags, parent, path)
        finally:
            os.close(parent)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            os.close(fd)
            why = "it is not a regular file" if not stat.S_ISREG(info.st_mode) else \
                "it has another hard link, which may be outside the root"
            raise PathRefusedError(f"{path}: refused: {why}")
        return os.fdopen(fd, "wb" if flags & os.O_WRONLY else "rb")

    def _inside(self, path: str, *, allow_root: bool = False) -> tuple[str, ...]:
        """The path's components below the root once resolved, or a refusal."""
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            raise PathRefusedError("a path must be a non-empty string without NUL")
        given = PurePosixPath(path)
        if given.is_absolute():
            raise PathRefusedError(f"{path}: refused: paths are relative to the root")
        if ".." in given.parts:
            raise PathRefusedError(f"{path}: refused: '..' may not appear in a path")
        try:
            resolved = (self.root / given).resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            raise PathRefusedError(f"{path}: refused: a symlink loop") from None
        if not resolved.is_relative_to(self.root):
            raise PathRefusedError(f"{path}: refused: it leads outside the root "
                                   "(through a symlink)")
        parts = resolved.relative_to(self.root).parts
        if not parts and not allow_root:
            raise PathRefusedError(f"{path}: refused: that is the root directory itself")
        return parts

    def _open_dir(self, path: str, parts: tuple[str, ...], *,
                  make_missing: bool = False) -> int:
        """The directory ``root/parts``, opened component by component, never through a
        symlink; missing ones made when asked."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                if make_missing:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                next_fd = _open_at(part, _DIR_FLAGS, fd, path)
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd


def _open_at(name: str, flags: int, dir_fd: int, path: str) -> int:
    """``name`` in the directory ``dir_fd``, refused if it is a symlink (whatever the check
    before it saw: it may have been swapped in since)."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if _is_symlink(name, dir_fd):
            raise PathRefusedError(f"{path}: refused: it changed into a symlink while being "
                                   "opened") from None
        raise InvalidInputError(f"{path}: {exc.strerror or exc}") from None


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "link" if stat.S_ISLNK(mode) else "other"

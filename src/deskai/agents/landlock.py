"""Landlock (Linux 5.13+): a process confines its own file access, no privileges needed.

A ``Ruleset`` is built in the parent — every path it may read, the one directory it may write —
and applied by the child between fork and exec (``restrict_self``), so the child does almost
nothing in that fragile window. Where the kernel's Landlock is new enough it also refuses TCP
(ABI 4), and abstract Unix sockets and signals outside the sandbox (ABI 6).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterable
from pathlib import Path

from deskai.errors import DeskaiError

# linux/landlock.h; the syscalls share their numbers on every architecture deskai runs on
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
IOCTL_DEV = 1 << 15
_READ = EXECUTE | READ_FILE | READ_DIR
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | (1 << 14) | IOCTL_DEV  # rights a file can hold
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_NET_TCP = 0b11  # bind and connect (ABI 4)
_SCOPES = 0b11  # abstract Unix sockets and signals (ABI 6)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI; 0 where there is none (not Linux, too old, or disabled)."""
    if platform.system() != "Linux":
        return 0
    version = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0),
                            ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


class Ruleset:
    """Read (and execute) beneath ``readable``; everything beneath ``writable``; nothing else."""

    def __init__(self, readable: Iterable[Path], writable: Iterable[Path]) -> None:
        self.abi = abi_version()
        if self.abi < 1:
            raise DeskaiError("this kernel has no Landlock (Linux 5.13+ with it enabled), "
                              "which keeps the code from touching files outside its directory")
        self.fs_rights = _FS_RIGHTS_BY_ABI.get(self.abi, (1 << 16) - 1)
        self.fd = self._create()
        try:
            for path in readable:
                self._allow(path, _READ)
            for path in writable:
                self._allow(path, self.fs_rights)
        except BaseException:
            os.close(self.fd)
            raise

    def _create(self) -> int:
        attr = _RulesetAttr(self.fs_rights, _NET_TCP if self.abi >= 4 else 0,
                            _SCOPES if self.abi >= 6 else 0)
        # an older kernel refuses fields it does not know: pass only those of its ABI
        size = 24 if self.abi >= 6 else 16 if self.abi >= 4 else 8
        fd = _libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
        if fd < 0:
            raise _os_error("landlock_create_ruleset")
        return int(fd)

    def _allow(self, path: Path, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # a system without /lib64, say
        try:
            if not path.is_dir():
                rights &= _FILE_ONLY
            rule = _PathBeneathAttr(rights & self.fs_rights, fd)
            if _libc.syscall(_ADD_RULE, self.fd, _RULE_PATH_BENEATH, ctypes.byref(rule),
                             ctypes.c_uint32(0)) < 0:
                raise _os_error(f"landlock_add_rule({path})")
        finally:
            os.close(fd)

    def restrict_self(self) -> None:
        """Apply the ruleset to this process for good (in the child, before exec)."""
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _os_error("prctl(PR_SET_NO_NEW_PRIVS)")
        if _libc.syscall(_RESTRICT_SELF, self.fd, ctypes.c_uint32(0)) != 0:
            raise _os_error("landlock_restrict_self")

    def close(self) -> None:
        os.close(self.fd)


def _os_error(what: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"{what}: {os.strerror(errno)}")

"""A seccomp filter that refuses new sockets: the sandbox's last word on talking to anything.

A network namespace cuts IP, and Landlock files, but a Unix socket on disk (a container
runtime's, the session bus) is reached by path from any namespace; refusing ``socket(2)`` —
and ``io_uring_setup(2)``, which can make sockets behind seccomp's back — closes that too.
``socketpair(2)`` stays allowed: it only connects the process to itself. System calls of
another ABI (32-bit, x32) are refused as a whole, so none of their numbers can slip past.

The filter is built in the parent as bytes; the child loads it with one ``prctl``.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

from deskai.errors import DeskaiError

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_X32_SYSCALL_BIT = 0x40000000
# machine → (AUDIT_ARCH_*, socket, io_uring_setup)
_ARCHES = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SocketFilter:
    """The BPF program, kept alive in this process until the child has loaded it."""

    def __init__(self) -> None:
        arch = _ARCHES.get(platform.machine())
        if arch is None:
            raise DeskaiError(f"the sandbox knows no seccomp numbers for {platform.machine()}; "
                              "the code is not run without it")
        program = _program(*arch)
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._buffer))

    def load(self) -> None:
        """Apply the filter to this process for good (in the child, before exec)."""
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or _libc.prctl(
                _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"seccomp: {errno.errorcode.get(code, code)}")


def _program(audit_arch: int, socket_nr: int, io_uring_nr: int) -> bytes:
    deny = _RET_ERRNO | errno.EPERM
    instructions = [
        (_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ_K, 1, 0, audit_arch),  # this ABI: go on; any other: deny
        (_RET_K, 0, 0, deny),
        (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (_JGE_K, 3, 0, _X32_SYSCALL_BIT),  # x32 numbers: deny
        (_JEQ_K, 2, 0, socket_nr),
        (_JEQ_K, 1, 0, io_uring_nr),
        (_RET_K, 0, 0, _RET_ALLOW),
        (_RET_K, 0, 0, deny),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in instructions)

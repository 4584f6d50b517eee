"""Run untrusted Python code (a model wrote it) in a child process that cannot reach out.

The child gets, all set up before it executes a single line of the code:

* no network: a new network namespace (nothing in it, not even a loopback that is up), made
  together with a new user namespace, so a root parent's child holds no capability on the host
  either. Where the system refuses namespaces the code does not run at all;
* no sockets: a seccomp filter refuses ``socket(2)``, so not even a Unix socket on disk (which
  no namespace hides) can be reached;
* no files but its own: Landlock lets it read the Python installation and the system
  libraries and write only beneath its own temporary directory, its working directory;
* limits: CPU seconds, address space (memory), file size, open files, and a wall clock after
  which its whole process group is killed;
* nothing inherited: ``python -I`` (isolated mode: no user site, no PYTHON* variables), an
  empty environment, stdin from /dev/null, its own session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deskai.agents.landlock import Ruleset
from deskai.agents.seccomp import SocketFilter
from deskai.errors import DeskaiError

_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_unshare = _libc.unshare  # looked up here: the child must do as little as possible
# system paths the interpreter and its extension modules load from (read-only)
_SYSTEM_READABLE = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc/ld.so.cache",
                    "/etc/localtime")


@dataclass(frozen=True, slots=True)
class Limits:
    wall_seconds: float = 30.0
    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30  # address space, which counts what is reserved as well
    file_bytes: int = 64 << 20  # any one file it writes
    open_files: int = 256
    output_bytes: int = 32 << 10  # of stdout and of stderr, read back


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the code ended: its exit status (or the signal that killed it) and its output."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool  # killed by the wall clock

    def describe(self) -> str:
        """The text a model reads: the output, then why it stopped if it did not exit 0."""
        parts = [self.stdout.rstrip("\n")] if self.stdout.strip() else []
        if self.stderr.strip():
            parts.append(f"[stderr]\n{self.stderr.rstrip()}")
        if self.timed_out:
            parts.append("[killed: it ran past its wall-clock limit]")
        elif self.returncode < 0:
            parts.append(f"[killed by {_signal_name(-self.returncode)}]")
        elif self.returncode != 0:
            parts.append(f"[exit status {self.returncode}]")
        return "\n".join(parts) or "[no output]"


def run_python(code: str, limits: Limits = Limits()) -> Outcome:
    """Run ``code`` as a script in a fresh sandbox; blocks until it ends or is killed."""
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deskai-python-")))
        (work / "main.py").write_text(code, encoding="utf-8")
        ruleset = Ruleset(readable=_python_paths(), writable=[work, Path(os.devnull)])
        stack.callback(ruleset.close)
        stdout, stderr = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(2))
        try:
            child = subprocess.Popen(
                [sys.executable, "-I", "main.py"], cwd=work, env={}, stdin=subprocess.DEVNULL,
                stdout=stdout, stderr=stderr, start_new_session=True,
                preexec_fn=_isolate(limits, ruleset, SocketFilter()))
        except subprocess.SubprocessError:
            # the child cannot say which step failed; namespaces are the one systems refuse
            raise DeskaiError(
                "cannot sandbox the code: this system refused a new user and network namespace "
                "(unshare(CLONE_NEWUSER | CLONE_NEWNET)) or the Landlock and seccomp filters, "
                "so it is not run rather than run with network access") from None
        timed_out = _wait(child, limits.wall_seconds)
        return Outcome(child.returncode, _read(stdout, limits.output_bytes),
                       _read(stderr, limits.output_bytes), timed_out)


def check_sandbox() -> None:
    """Run an empty script in the sandbox: a ``DeskaiError`` now, where this system cannot
    give one, rather than at the first call."""
    outcome = run_python("", Limits(wall_seconds=10))
    if outcome.returncode != 0:
        raise DeskaiError(f"the python tool's sandbox does not work here: {outcome.describe()}")


def _isolate(limits: Limits, ruleset: Ruleset,
             sockets: SocketFilter) -> Callable[[], None]:
    """What the child does between fork and exec: limits, namespaces, Landlock, seccomp."""
    cpu = limits.cpu_seconds
    rlimits = [(resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU, then SIGKILL a second later
               (resource.RLIMIT_AS, (limits.memory_bytes,) * 2),
               (resource.RLIMIT_FSIZE, (limits.file_bytes,) * 2),
               (resource.RLIMIT_NOFILE, (limits.open_files,) * 2),
               (resource.RLIMIT_CORE, (0, 0))]

    def isolate() -> None:
        for which, values in rlimits:
            resource.setrlimit(which, values)
        if _unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        ruleset.restrict_self()
        sockets.load()

    return isolate


def _wait(child: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait for ``child``; past ``seconds`` kill its process group. Then kill what it left
    running in the background, so nothing of it outlives the call."""
    try:
        child.wait(timeout=seconds)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return timed_out


def _read(handle: IO[bytes], limit: int) -> str:
    handle.seek(0)
    data = handle.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + "\n[... output cut]" if len(data) > limit else text


def _python_paths() -> list[Path]:
    """What the interpreter reads to start and import: its prefixes, the standard library,
    site-packages, and the system's shared libraries."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)),
             *sysconfig.get_paths().values(), *_SYSTEM_READABLE}
    return sorted({Path(path).resolve() for path in paths if path})


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

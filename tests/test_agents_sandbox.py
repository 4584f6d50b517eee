"""The built-in tools' confinement: the python tool's sandbox (no sockets, no network, no files
but its own, limits that stop it) and the files tool's root (every escape refused)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
from agents_support import run

from deskai.agents import sandbox as sandbox_module
from deskai.agents.builtin import builtin_source
from deskai.agents.files import ConfinedFiles, PathRefusedError
from deskai.agents.landlock import abi_version
from deskai.agents.mcp_client import open_toolbox
from deskai.agents.sandbox import Limits, run_python
from deskai.agents.toolbox import ToolResult
from deskai.errors import DeskaiError, InvalidInputError

needs_sandbox = pytest.mark.skipif(
    sys.platform != "linux" or abi_version() < 1,
    reason="the python tool's sandbox needs Linux with Landlock (it refuses to run otherwise)")


@needs_sandbox
def test_code_runs_in_its_own_directory_with_nothing_inherited(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKAI_TEST_SECRET", "hunter2")
    outcome = run_python("import json, os, sys\n"
                         "open('made.txt', 'w').write('mine')\n"
                         "print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ),\n"
                         "  'isolated': sys.flags.isolated, 'made': open('made.txt').read()}))")
    assert outcome.returncode == 0, outcome.describe()
    seen = json.loads(outcome.stdout)
    assert Path(seen["cwd"]).name.startswith("deskai-python-") and seen["made"] == "mine"
    assert "DESKAI_TEST_SECRET" not in seen["env"] and seen["isolated"] == 1
    assert not Path(seen["cwd"]).exists()  # removed with everything in it


@needs_sandbox
def test_it_cannot_open_a_socket_or_reach_anything(tmp_path: Path) -> None:
    """TCP and UDP on loopback and outside, a Unix socket on disk (which no network namespace
    hides) and an abstract one: every attempt fails, and nothing listening hears a byte."""
    unix_socket = str(tmp_path / "listening.sock")
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_UNIX) as unix_path, socket.socket(socket.AF_UNIX) as abstract:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        unix_path.bind(unix_socket)
        unix_path.listen()
        abstract.bind(f"\0deskai-test-{os.getpid()}")
        abstract.listen()
        attempts = {
            "tcp_loopback": f"socket.create_connection(('127.0.0.1', {tcp.getsockname()[1]}), 2)",
            "tcp_outside": "socket.create_connection(('1.1.1.1', 53), 2)",
            "udp_loopback": "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', "
                            f"('127.0.0.1', {udp.getsockname()[1]}))",
            "unix_path": f"socket.socket(socket.AF_UNIX).connect({unix_socket!r})",
            "unix_abstract": "socket.socket(socket.AF_UNIX).connect("
                             f"'\\0deskai-test-{os.getpid()}')",
            "dns": "socket.getaddrinfo('example.com', 80)",
        }
        code = "import json, socket\nfailed = {}\n" + "".join(
            f"try:\n    {attempt}\n    failed[{name!r}] = None\n"
            f"except OSError as exc:\n    failed[{name!r}] = type(exc).__name__\n"
            for name, attempt in attempts.items()) + "print(json.dumps(failed))"
        outcome = run_python(code)
        assert outcome.returncode == 0, outcome.describe()
        failures = json.loads(outcome.stdout)
        assert all(failures[name] for name in attempts), failures
        for listener in (tcp, unix_path, abstract):
            listener.settimeout(0.2)
            with pytest.raises(TimeoutError):
                listener.accept()
        udp.settimeout(0.2)
        with pytest.raises(TimeoutError):
            udp.recv(16)


@needs_sandbox
def test_it_cannot_write_or_read_outside_its_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o777)
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's own file")
    targets = [outside / "written.txt", Path("/tmp/deskai-sandbox-escape.txt"),
               Path.home() / "deskai-sandbox-escape.txt", Path(sys.prefix) / "escape.txt"]
    code = "import json, os\nresults = {}\n" + "".join(
        f"try:\n    open({str(target)!r}, 'w').write('x')\n    results[{str(target)!r}] = 'ok'\n"
        f"except OSError as exc:\n    results[{str(target)!r}] = exc.strerror\n"
        for target in targets) + (
        f"try:\n    results['read'] = open({str(secret)!r}).read()\n"
        "except OSError as exc:\n    results['read'] = exc.strerror\n"
        f"try:\n    os.remove({str(secret)!r})\n    results['remove'] = 'ok'\n"
        "except OSError as exc:\n    results['remove'] = exc.strerror\n"
        "print(json.dumps(results))")
    outcome = run_python(code)
    assert outcome.returncode == 0, outcome.describe()
    results = json.loads(outcome.stdout)
    assert "ok" not in results.values() and results["read"] == "Permission denied", results
    assert not any(target.exists() for target in targets)
    assert secret.read_text() == "the user's own file"


@needs_sandbox
@pytest.mark.parametrize(("code", "limits", "why"), [
    ("while True:\n    pass", Limits(cpu_seconds=1), "[killed by SIGXCPU]"),
    ("import time\ntime.sleep(60)", Limits(wall_seconds=1), "wall-clock limit"),
    ("data = bytearray(2 << 30)", Limits(memory_bytes=256 << 20), "MemoryError"),
    ("open('big', 'wb').write(bytes(8 << 20))", Limits(file_bytes=1 << 20), "File too large"),
])
def test_it_is_stopped_past_its_limits(code: str, limits: Limits, why: str) -> None:
    started = time.monotonic()
    outcome = run_python(code, limits)
    assert outcome.returncode != 0 and why in outcome.describe(), outcome.describe()
    assert time.monotonic() - started < 10


@needs_sandbox
def test_nothing_it_starts_outlives_the_call() -> None:
    outcome = run_python("import subprocess, sys\n"
                         "child = subprocess.Popen([sys.executable, '-c', "
                         "'import time; time.sleep(60)'])\nprint(child.pid)")
    assert outcome.returncode == 0, outcome.describe()
    pid = int(outcome.stdout)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the background child is still running"
        time.sleep(0.05)


@needs_sandbox
def test_without_namespaces_the_code_is_refused_not_run(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    python = builtin_source(["python"])  # checked while the sandbox still works
    monkeypatch.setattr(sandbox_module, "_unshare", lambda flags: -1)
    with pytest.raises(DeskaiError, match="refused a new user and network namespace"):
        run_python(f"open({str(marker)!r}, 'w')")
    with pytest.raises(DeskaiError, match="refused a new user and network namespace"):
        builtin_source(["python"])  # the tool is not even offered

    async def through_the_toolbox() -> ToolResult:
        async with open_toolbox([], [python]) as toolbox:
            return await toolbox.call("python", {"code": f"open({str(marker)!r}, 'w')"})

    result = run(through_the_toolbox())
    assert result.is_error and "not run rather than run with network" in result.text
    assert not marker.exists()


# -- the files tool ---------------------------------------------------------------------------


@pytest.fixture
def confined(tmp_path: Path) -> tuple[ConfinedFiles, Path, Path]:
    """A root with a few legitimate entries, an outside directory beside it, and links in the
    root that lead out."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("buy milk")
    (root / "inner_link.txt").symlink_to("notes/todo.txt")  # inside → inside: fine
    (root / "out_dir").symlink_to(outside)  # relative escapes below
    (root / "out_file").symlink_to(outside / "secret.txt")
    (root / "out_absolute").symlink_to("/etc")
    (root / "out_dangling").symlink_to(outside / "created-through-link.txt")
    (root / "chain").symlink_to("out_dir")  # a link to a link that leads out
    (root / "loop_a").symlink_to("loop_b")
    (root / "loop_b").symlink_to("loop_a")
    (root / "hard_link.txt").hardlink_to(outside / "secret.txt")
    os.mkfifo(root / "pipe")
    return ConfinedFiles(root), root, outside


def test_files_inside_the_root_work(confined: tuple[ConfinedFiles, Path, Path]) -> None:
    files, root, _ = confined
    assert files.read("notes/todo.txt") == "buy milk"
    assert files.read("inner_link.txt") == "buy milk"
    assert files.write("new/deeper/file.txt", "hello") == 5
    assert (root / "new" / "deeper" / "file.txt").read_text() == "hello"
    files.write("notes/todo.txt", "x")
    assert files.read("./notes//todo.txt") == "x"
    names = {entry.name: entry.kind for entry in files.list()}
    assert names["notes"] == "dir" and names["out_dir"] == "link" and names["pipe"] == "other"
    assert [entry.name for entry in files.list("notes")] == ["todo.txt"]


ESCAPES = [
    "../outside/secret.txt",  # plain parent reference
    "notes/../../outside/secret.txt",  # one hidden in the middle
    "notes/..",  # even one that would stay inside
    "/etc/passwd",  # absolute
    "//etc/passwd",  # absolute, spelled another way
    "out_dir/secret.txt",  # through a symlinked directory
    "out_file",  # a symlink to an outside file
    "out_absolute/passwd",  # an absolute symlink
    "chain/secret.txt",  # a symlink to a symlink that leads out
    "out_dangling",  # a dangling link whose target is outside (a write would create it)
    "loop_a",  # a symlink loop
    "hard_link.txt",  # a hard link to an outside file
    "pipe",  # not a regular file (a read would block)
    "notes",  # a directory, not a file
    ".",  # the root itself
    "",  # nothing
    "notes\0/todo.txt",  # a NUL byte
]


@pytest.mark.parametrize("path", ESCAPES)
def test_every_escape_is_refused(confined: tuple[ConfinedFiles, Path, Path], path: str) -> None:
    files, _, outside = confined
    for attempt in (lambda: files.read(path), lambda: files.write(path, "pwned")):
        with pytest.raises(InvalidInputError):
            attempt()
    assert (outside / "secret.txt").read_text() == "secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


@pytest.mark.parametrize("path", ["../outside", "out_dir", "/", "chain"])
def test_listing_outside_is_refused(confined: tuple[ConfinedFiles, Path, Path],
                                    path: str) -> None:
    with pytest.raises(PathRefusedError):
        confined[0].list(path)


def test_a_directory_swapped_for_a_symlink_after_the_check_is_not_followed(
        confined: tuple[ConfinedFiles, Path, Path]) -> None:
    """The race a resolve-then-open check leaves: the walk with O_NOFOLLOW still refuses."""
    files, root, outside = confined
    parts = files._inside("notes/todo.txt")  # checked while "notes" is a real directory
    (root / "notes" / "todo.txt").unlink()
    (root / "notes").rmdir()
    (root / "notes").symlink_to(outside)
    with pytest.raises(PathRefusedError, match="changed into a symlink"):
        files._open_dir("notes/todo.txt", parts[:-1])


def test_the_files_tool_reports_refusals_to_the_model(
        confined: tuple[ConfinedFiles, Path, Path]) -> None:
    _, root, _ = confined

    async def main() -> list[ToolResult]:
        async with open_toolbox([], [builtin_source([f"files={root}"])]) as toolbox:
            return [await toolbox.call("read_file", {"path": "../outside/secret.txt"}),
                    await toolbox.call("write_file", {"path": "a.txt", "content": "hi"}),
                    await toolbox.call("list_files", {})]

    refused, written, listing = run(main())
    assert refused.is_error and "refused" in refused.text
    assert written.text == "wrote 2 bytes to a.txt"
    assert "a.txt (2 bytes)" in listing.text and "notes/" in listing.text


@pytest.mark.parametrize("spec", ["pyhton", "files", "fit=x", "python=3", "files="])
def test_an_unknown_builtin_tool_is_refused(spec: str) -> None:
    with pytest.raises(InvalidInputError, match="built-in tool"):
        builtin_source([spec])

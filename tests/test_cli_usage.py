"""The CLI as typed at a shell: usage errors are usage (exit 2, no traceback) on every verb,
and piped output carries whole names (``deskai list | grep NAME``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import typer
from conftest import deskai_command, write_tiny_gguf

from deskai.cli import app
from deskai.store import Store

LONG_NAME = "someone/a-really-long-model-name-for-testing-pipes-and-grep:q4_k_m-v2"


def _command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """``prefix`` and every command below it, groups walked (``plan`` -> ``plan train``)."""
    paths = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*prefix, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # COLUMNS would size rich's output as a terminal's; a pipe must not depend on it
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([*deskai_command(), *args], capture_output=True, text=True,
                          timeout=60, env={**env, "DESKAI_HOME": str(home)})


def assert_usage_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    assert "Usage:" in done.stderr and needle in done.stderr, output


def test_discovery_walks_nested_groups() -> None:
    assert {(), ("list",), ("serve",), ("plan",), ("plan", "train")} <= set(COMMANDS)


@pytest.mark.slow  # a process per command: the sweep belongs with the long tests
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "deskai")
def test_every_command_refuses_a_bogus_option(path: tuple[str, ...], deskai_home: Path) -> None:
    # parsing fails before any command body runs, so no model loads and no server starts
    assert_usage_error(run_cli(deskai_home, *path, "--no-such-option"), "--no-such-option")


@pytest.mark.parametrize(("args", "needle"), [
    (["bogus-command"], "No such command"),
    (["--x"], "--x"),
    (["import"], "Missing argument"),
    (["serve", "--port", "abc"], "--port"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--port", "0"], "--port"),
])
def test_usage_errors_exit_2_without_a_traceback(args: list[str], needle: str,
                                                 deskai_home: Path) -> None:
    assert_usage_error(run_cli(deskai_home, *args), needle)


def test_help_still_exits_0(deskai_home: Path) -> None:
    done = run_cli(deskai_home, "list", "--help")
    assert done.returncode == 0 and "--json" in done.stdout, done.stderr


@pytest.fixture
def home_with_long_name(deskai_home: Path, tmp_path: Path) -> Path:
    Store(deskai_home).import_model(write_tiny_gguf(tmp_path / "tiny.gguf"), LONG_NAME)
    return deskai_home


def test_piped_list_carries_whole_names(home_with_long_name: Path) -> None:
    done = run_cli(home_with_long_name, "list")
    assert done.returncode == 0, done.stderr
    assert LONG_NAME in done.stdout and "…" not in done.stdout


def test_list_json(home_with_long_name: Path) -> None:
    done = run_cli(home_with_long_name, "list", "--json")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    assert entry["name"] == LONG_NAME and entry["digest"].startswith("sha256:")
    assert entry["architecture"] == "llama" and entry["size"] > 0


def test_list_json_of_an_empty_store(deskai_home: Path) -> None:
    done = run_cli(deskai_home, "list", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr


def test_piped_show_carries_the_whole_digest(home_with_long_name: Path) -> None:
    digest = Store(home_with_long_name).get(LONG_NAME).model_layer.digest
    done = run_cli(home_with_long_name, "show", LONG_NAME)
    assert done.returncode == 0, done.stderr
    assert digest in done.stdout and LONG_NAME in done.stdout


@pytest.mark.parametrize(("variable", "value", "args"), [
    ("DESKAI_PORT", "abc", ["run", "x"]), ("DESKAI_PORT", "99999", ["run", "x"]),
    ("DESKAI_CONTEXT", "-5", ["run", "--local", "x"]),
    ("DESKAI_THREADS", "many", ["run", "--local", "x"]),
])
def test_a_bad_setting_is_one_line_and_exit_2(deskai_home: Path, variable: str, value: str,
                                              args: list[str]) -> None:
    done = subprocess.run([*deskai_command(), *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, variable: value})
    assert done.returncode == 2, done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output and f"${variable}" in output
    assert len(output.strip().splitlines()) == 1

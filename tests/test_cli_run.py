"""``deskai run`` as a user types it: a prompt streamed to stdout, or an interactive chat."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REAL_MODEL, ServerProcess, deskai_command


def run_cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*deskai_command(), *args], input=stdin, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "DESKAI_HOME": str(home)})


def test_run_prompt_in_process_names_paris(shared_home: Path) -> None:
    done = run_cli(shared_home, "run", REAL_MODEL, "The Eiffel Tower is located in the city of",
                   "--local", "--max-tokens", "8")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout


def test_run_prompt_through_a_running_server(server: ServerProcess, shared_home: Path) -> None:
    done = run_cli(shared_home, "run", REAL_MODEL, "1, 2, 3, 4, 5,", "--url", server.url,
                   "--max-tokens", "10")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(" 6, 7, 8")
    assert "POST /v1/completions 200" in server.log()


def test_interactive_chat_keeps_history_and_quits_on_eof(shared_home: Path) -> None:
    done = run_cli(shared_home, "run", REAL_MODEL, "--local", "--max-tokens", "12",
                   stdin="What is the capital of France?\nAnd of Italy?\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(">>> ") == 3  # two questions, then the prompt that gets EOF
    assert "Paris" in done.stdout


def test_run_unknown_model_is_one_line_and_status_2(deskai_home: Path) -> None:
    done = run_cli(deskai_home, "run", "nope:1", "hello", "--local")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ") and len(done.stderr.strip().splitlines()) == 1

"""``deskai bench`` against a real server: it reports every level, as a table or JSON."""

from __future__ import annotations

import json
import os

from conftest import REAL_MODEL, ServerProcess
from typer.testing import CliRunner

from deskai.cli import app


def test_bench_reports_each_level_as_json(server: ServerProcess) -> None:
    result = CliRunner().invoke(app, ["bench", "--url", server.url, "--model", REAL_MODEL,
                                      "--concurrency", "1,2", "--prompt-tokens", "8",
                                      "--output-tokens", "4", "--requests", "2", "--json"])
    assert result.exit_code == 0, result.output
    levels = json.loads(result.output)
    assert [level["concurrency"] for level in levels] == [1, 2]
    for level in levels:
        assert level["failures"] == 0 and level["requests"] == 2
        assert level["output_tokens"] >= 2 and level["output_tok_s"] > 0
        assert 0 < level["ttft_p50"] <= level["ttft_p95"]
        # the load generator's own CPU use: some, and no more than the cores give in that time
        assert 0 < level["client_cpu_s"] <= level["duration"] * (os.cpu_count() or 1)


def test_bench_rejects_bad_levels() -> None:
    result = CliRunner().invoke(app, ["bench", "--concurrency", "1,x"])
    assert result.exit_code != 0

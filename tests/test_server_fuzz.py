"""A bounded schemathesis run against the served OpenAPI document: no 5xx, errors as documented."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from conftest import REAL_MODEL, ServerProcess
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deskai.store import Store, parse_model_name

CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance,
          content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, real_gguf: Path
                ) -> Iterator[ServerProcess]:
    """Its own store (the real model linked in): fuzzed deletes and copies touch nothing else."""
    home = tmp_path_factory.mktemp("fuzz-home")
    source = Store(real_gguf.parent.parent)
    target = Store(home)
    target.blobs_dir.mkdir(parents=True)
    os.link(real_gguf, target.blobs_dir / real_gguf.name)
    target.manifests_dir.mkdir(parents=True)
    filename = parse_model_name(REAL_MODEL).filename
    shutil.copyfile(source.manifests_dir / filename, target.manifests_dir / filename)
    proc = ServerProcess(home, "--context", "256", "--max-queue", "4",
                         env={"HF_HUB_OFFLINE": "1"})
    yield proc
    proc.stop()


def test_no_5xx_and_errors_as_documented(fuzz_server: ServerProcess) -> None:
    """Every operation, a bounded number of generated requests each; failures collected."""
    api = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    failures: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case) -> None:
            response = case.call_and_validate(checks=CHECKS, timeout=120)
            statuses.append(response.status_code)

        try:
            exercise()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert len(statuses) >= 10 * len(operations), "the fuzzer really sent requests"
    assert any(400 <= status < 500 for status in statuses), "and bad ones among them"
    print(f"fuzzed {len(statuses)} requests: "
          f"{ {s: statuses.count(s) for s in sorted(set(statuses))} }")

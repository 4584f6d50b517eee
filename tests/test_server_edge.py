"""The HTTP edge: API keys, body limits, CORS, and /metrics counting real tokens."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import REAL_MODEL, ServerProcess

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def locked_server(shared_home: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(shared_home, "--cors-origin", "http://allowed.example",
                         "--max-body-mb", "0.01", env={"DESKAI_API_KEY": KEY})
    yield proc
    proc.stop()


ROUTES = [("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
          ("POST", "/v1/embeddings"), ("GET", "/metrics"), ("GET", "/api/tags"),
          ("POST", "/api/generate"), ("GET", "/v1/models/gemma3:270m"), ("GET", "/openapi.json")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_but_health_needs_the_key(locked_server: ServerProcess, method: str,
                                              path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = httpx.request(method, locked_server.url + path, headers=headers,
                                 json={}, timeout=30)
        assert response.status_code == 401
        error = response.json()["error"]
        if path.startswith("/api/"):  # Ollama's clients read {"error": "..."}
            assert isinstance(error, str) and "API key" in error
        else:
            assert error["type"] == "authentication_error" and set(error) == {
                "message", "type", "param", "code"}
    assert httpx.get(locked_server.url + "/health", timeout=30).status_code == 200


def test_the_key_opens_the_api(locked_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{locked_server.url}/v1", api_key=KEY, max_retries=0)
    assert REAL_MODEL in [m.id for m in client.models.list()]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{locked_server.url}/v1", api_key="nope",
                      max_retries=0).models.list()


def test_oversized_bodies_are_refused(locked_server: ServerProcess) -> None:
    body = {"model": REAL_MODEL, "prompt": "x" * 20_000}
    response = httpx.post(locked_server.url + "/v1/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_cors_only_for_the_named_origin(locked_server: ServerProcess,
                                        server: ServerProcess) -> None:
    def preflight(url: str, origin: str) -> httpx.Response:
        return httpx.options(url + "/v1/models", timeout=30, headers={
            "Origin": origin, "Access-Control-Request-Method": "GET"})
    allowed = preflight(locked_server.url, "http://allowed.example")
    assert allowed.headers.get("access-control-allow-origin") == "http://allowed.example"
    other = preflight(locked_server.url, "http://evil.example")
    assert other.headers.get("access-control-allow-origin") is None
    plain = httpx.get(server.url + "/v1/models", headers={"Origin": "http://x.example"},
                      timeout=30)
    assert "access-control-allow-origin" not in plain.headers, "CORS is off by default"


def scrape(url: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def test_metrics_count_exactly_the_generated_tokens(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    label = f'{{model="{REAL_MODEL}"}}'
    before = scrape(server.url)
    generated = 0
    for max_tokens, stream in ((5, False), (7, True), (3, False)):
        if stream:
            chunks = list(client.completions.create(
                model=REAL_MODEL, prompt="1, 2, 3,", max_tokens=max_tokens, temperature=0,
                stream=True, stream_options={"include_usage": True}))
            generated += chunks[-1].usage.completion_tokens  # type: ignore[union-attr]
        else:
            result = client.completions.create(model=REAL_MODEL, prompt="1, 2, 3,",
                                               max_tokens=max_tokens, temperature=0)
            generated += result.usage.completion_tokens  # type: ignore[union-attr]
    after = scrape(server.url)
    key = f"deskai_generated_tokens_total{label}"
    assert after[key] - before.get(key, 0.0) == generated == 15
    ttft = f"deskai_time_to_first_token_seconds_count{label}"
    assert after[ttft] - before.get(ttft, 0.0) == 3
    requests = 'deskai_requests_total{method="POST",route="/v1/completions",status="200"}'
    deadline = time.monotonic() + 10  # a request is counted just after its last byte is sent
    while (after.get(requests, 0.0) - before.get(requests, 0.0) < 3
           and time.monotonic() < deadline):
        time.sleep(0.2)
        after = scrape(server.url)
    assert after[requests] - before.get(requests, 0.0) == 3
    assert after["deskai_loaded_models"] >= 1
    assert f"deskai_kv_cache_capacity_tokens{label}" in after
    assert f"deskai_queue_depth{label}" in after

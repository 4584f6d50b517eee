"""A hostile but fair client against the real app (over the fake engine, so fast): cross-site
and rebound requests, bad input that must be a clear 4xx and never a 500, Ollama's probes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import FAKE_MODEL, AppThread, fake_serving

from deskai.server.app import ServerSettings
from deskai.store import Store


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppThread]:
    home = tmp_path_factory.mktemp("trust") / "home"
    with fake_serving(home, ServerSettings(cors_origins=("http://app.example",))) as (app, _):
        app.home = home  # type: ignore[attr-defined]
        yield app


def post(server: AppThread, path: str, body: bytes | dict, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30)


# -- cross-site requests and DNS rebinding -----------------------------------------------------

def test_a_foreign_page_cannot_write(server: AppThread) -> None:
    body = {"source": FAKE_MODEL, "destination": "csrf/planted:x"}
    refused = post(server, "/api/copy", body, **{"content-type": "text/plain",
                                                 "origin": "http://evil.example"})
    assert refused.status_code == 403 and "origin" in refused.json()["error"]
    assert not Store(server.home).exists("csrf/planted:x")  # type: ignore[attr-defined]
    chat = post(server, "/v1/chat/completions", {"model": FAKE_MODEL, "messages": [
        {"role": "user", "content": "hi"}]}, origin="http://evil.example")
    assert chat.status_code == 403 and chat.json()["error"]["code"] == "origin_not_allowed"


def test_curl_the_same_origin_and_allowed_origins_still_work(server: AppThread) -> None:
    body = {"model": FAKE_MODEL, "prompt": "hi", "max_tokens": 2}
    assert post(server, "/v1/completions", body,  # curl -d: form type, no Origin
                **{"content-type": "application/x-www-form-urlencoded"}).status_code == 200
    assert post(server, "/v1/completions", body, origin=server.url).status_code == 200
    assert post(server, "/v1/completions", body, origin="http://app.example").status_code == 200


def test_a_rebound_host_name_is_refused(server: AppThread) -> None:
    rebound = httpx.get(f"{server.url}/api/tags", headers={"host": "evil.example"})
    assert rebound.status_code == 403 and "--allowed-hosts" in rebound.json()["error"]
    for host in ("localhost", f"localhost:{server.port}", "127.0.0.1", "[::1]:80"):
        assert httpx.get(f"{server.url}/api/tags", headers={"host": host}).status_code == 200


def test_allowed_hosts_and_a_public_bind(tmp_path: Path) -> None:
    settings = ServerSettings(allowed_hosts=("spark.lan",))
    with fake_serving(tmp_path / "a", settings) as (app, _):
        assert httpx.get(f"{app.url}/api/tags", headers={"host": "spark.lan"}).status_code == 200
        assert httpx.get(f"{app.url}/api/tags", headers={"host": "x.lan"}).status_code == 403
    with fake_serving(tmp_path / "b", ServerSettings(bind_host="0.0.0.0")) as (app, _):
        assert httpx.get(f"{app.url}/api/tags", headers={"host": "x.lan"}).status_code == 200


def test_health_says_nothing_more_than_ok_behind_a_key(tmp_path: Path) -> None:
    with fake_serving(tmp_path / "home", ServerSettings(api_key="sekret")) as (app, _):
        assert httpx.get(f"{app.url}/health").json() == {"status": "ok"}
        assert httpx.get(f"{app.url}/api/tags").status_code == 401
        for header in ({"authorization": "bearer sekret"}, {"Authorization": "BEARER sekret"},
                       {"x-api-key": "sekret"}):
            assert httpx.get(f"{app.url}/api/tags", headers=header).status_code == 200
        assert httpx.get(f"{app.url}/", headers={}).status_code == 200


def test_ollama_probes_get_and_head_root(server: AppThread) -> None:
    assert httpx.get(server.url).text == "deskai is running"
    assert httpx.head(server.url).status_code == 200


# -- bad input: a clear 4xx naming the parameter, never a 500 ----------------------------------

SURROGATE = b'"\\ud800"'


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/completions", b'{"model": "fake:base", "prompt": %s}', "prompt"),
    ("/v1/chat/completions",
     b'{"model": "fake:base", "messages": [{"role": "user", "content": %s}]}',
     "messages[0].content"),
    ("/api/generate", b'{"model": "fake:base", "prompt": %s}', "prompt"),
    ("/v1/embeddings", b'{"model": "fake:base", "input": [%s]}', "input[0]"),
    ("/v1/chat/completions", b'{"model": "fake:base", "messages": [{"role": "user", "content": '
     b'"x"}], "response_format": {"type": "json_schema", "json_schema": {"schema": '
     b'{"type": "string", "pattern": %s}}}}',
     "response_format.json_schema.schema.pattern"),
])
def test_a_lone_surrogate_is_a_400(server: AppThread, path: str, body: bytes,
                                   param: str) -> None:
    response = post(server, path, body.replace(b"%s", SURROGATE))
    assert response.status_code == 400
    if path.startswith("/v1/"):
        assert response.json()["error"]["param"] == param
    assert "surrogate" in str(response.json())


@pytest.mark.parametrize("key", ["²", "¹", "٣", "-1", "1.5"])
def test_logit_bias_keys_must_be_ascii_token_ids(server: AppThread, key: str) -> None:
    response = post(server, "/v1/completions", {"model": FAKE_MODEL, "prompt": "hi",
                                                 "logit_bias": {key: 1}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "logit_bias"


@pytest.mark.parametrize("keep_alive", [1e12, "1e12", 10**400, "-1e300", "9999999h"])
def test_a_huge_keep_alive_means_forever_and_ps_keeps_working(server: AppThread,
                                                              keep_alive: object) -> None:
    response = post(server, "/api/generate", {"model": FAKE_MODEL, "prompt": "hi",
                                              "keep_alive": keep_alive, "stream": False})
    assert response.status_code == 200
    ps = httpx.get(f"{server.url}/api/ps")
    assert ps.status_code == 200 and ps.json()["models"][0]["expires_at"].startswith("2318")


@pytest.mark.parametrize("keep_alive", ["NaN", "inf", "-inf"])
def test_a_keep_alive_that_is_no_number_is_a_400(server: AppThread, keep_alive: str) -> None:
    response = post(server, "/api/generate", {"model": FAKE_MODEL, "prompt": "hi",
                                              "keep_alive": keep_alive})
    assert response.status_code == 400 and "keep_alive" in response.json()["error"]
    assert httpx.get(f"{server.url}/api/ps").status_code == 200


def test_chat_takes_the_documented_16_stop_strings(server: AppThread) -> None:
    response = post(server, "/v1/chat/completions", {
        "model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}],
        "stop": [f"stop{i}" for i in range(16)], "max_tokens": 4})
    assert response.status_code == 200
    too_many = post(server, "/v1/chat/completions", {
        "model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}],
        "stop": [f"stop{i}" for i in range(17)]})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "stop"


CHAT = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("extra", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {
        "type": "array", "minItems": 3, "maxItems": 1}}}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {
        "type": "string", "maxLength": -1}}}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {
        "type": "object", "required": "a"}}}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": 7}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "required": "a"}}}]}, "tools"),
    ({"stream": "yes"}, "stream"),
    ({"logprobs": "true"}, "logprobs"),
])
def test_unsatisfiable_or_mistyped_requests_are_refused(server: AppThread, extra: dict,
                                                        param: str) -> None:
    response = post(server, "/v1/chat/completions", {**CHAT, **extra})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/completions", {"model": FAKE_MODEL, "prompt": 5}, "prompt"),
    ("/v1/completions", {"model": FAKE_MODEL, "prompt": "x", "stop": 5}, "stop"),
    ("/v1/chat/completions", {**CHAT, "tool_choice": 5}, "tool_choice"),
])
def test_error_params_name_the_clients_field(server: AppThread, path: str, body: dict,
                                             param: str) -> None:
    response = post(server, path, body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_ollama_format_errors_name_format(server: AppThread) -> None:
    response = post(server, "/api/generate", {"model": FAKE_MODEL, "prompt": "x", "format": 5})
    assert response.status_code == 400 and "'format'" in response.json()["error"]
    assert "literal" not in response.json()["error"]

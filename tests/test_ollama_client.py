"""The Ollama API of a real ``deskai serve`` process, driven by the official ``ollama`` client."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from conftest import REAL_MODEL, ServerProcess, clone_home
from fake_hub import FakeHub, sha256_hex, write_gguf

from deskai.store import BUNDLED_EMBEDDING_MODEL, Store, ensure_bundled_model

PARIS_PROMPT = "The Eiffel Tower is located in the city of"
COUNT_PROMPT = "1, 2, 3, 4, 5,"
GREEDY = {"temperature": 0, "num_predict": 8}
REPO = "tester/pullme-GGUF"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    data = write_gguf(tmp_path_factory.mktemp("hubfiles") / "m.gguf", megabytes=2).read_bytes()
    hub = FakeHub()
    hub.add_repo_file(REPO, "pullme-Q4_K_M.gguf", data)
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def ollama_home(shared_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_bundled_model(Store(shared_home), BUNDLED_EMBEDDING_MODEL)
    return clone_home(shared_home, tmp_path_factory.mktemp("ollama") / "home")


@pytest.fixture(scope="module")
def api(ollama_home: Path, hub: FakeHub) -> Iterator[ServerProcess]:
    proc = ServerProcess(ollama_home, env={"HF_ENDPOINT": hub.url})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(api: ServerProcess) -> ollama.Client:
    return ollama.Client(host=api.url, timeout=120)


def test_version_tags_and_show(client: ollama.Client, api: ServerProcess) -> None:
    assert httpx.get(f"{api.url}/api/version").json()["version"]
    listed = {m.model: m for m in client.list().models}
    gemma = listed[REAL_MODEL]
    assert gemma.details is not None and gemma.details.family == "gemma3"
    assert gemma.details.quantization_level == "Q4_K_M"
    assert gemma.size and gemma.size > 100_000_000 and len(gemma.digest or "") == 64
    shown = client.show(REAL_MODEL)
    assert shown.capabilities == ["completion"]
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "gemma3"
    assert "User:" in (shown.template or "") and "stop" in (shown.parameters or "")


def test_generate_continues_the_prompt(client: ollama.Client) -> None:
    result = client.generate(model=REAL_MODEL, prompt=PARIS_PROMPT, options=GREEDY,
                             stream=False)
    assert "Paris" in result.response
    assert result.done and result.done_reason == "length" and result.eval_count == 8
    assert result.prompt_eval_count and result.total_duration and result.context
    streamed = list(client.generate(model=REAL_MODEL, prompt=PARIS_PROMPT, options=GREEDY,
                                    stream=True))
    assert len(streamed) > 3 and streamed[-1].done and not streamed[0].done
    assert "".join(part.response for part in streamed) == result.response


def test_generate_continues_from_context(client: ollama.Client) -> None:
    first = client.generate(model=REAL_MODEL, prompt="1, 2, 3,",
                            options={"temperature": 0, "num_predict": 4})
    follow = client.generate(model=REAL_MODEL, prompt=" 6, 7,", context=first.context,
                             options={"temperature": 0, "num_predict": 4})
    assert follow.prompt_eval_count and follow.prompt_eval_count > len(first.context or []) - 1
    assert follow.response.startswith(" 8")


def test_stop_option_and_seed(client: ollama.Client) -> None:
    result = client.generate(model=REAL_MODEL, prompt=COUNT_PROMPT,
                             options={"temperature": 0, "num_predict": 20, "stop": [" 8"]})
    assert result.response == " 6, 7," and result.done_reason == "stop"
    sampled = [client.generate(model=REAL_MODEL, prompt="Once upon a time",
                               options={"temperature": 1.0, "seed": 7, "num_predict": 12}
                               ).response for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_chat_streamed(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    whole = client.chat(model=REAL_MODEL, messages=messages,
                        options={"temperature": 0, "num_predict": 16})
    assert whole.message.role == "assistant" and "Paris" in (whole.message.content or "")
    parts = list(client.chat(model=REAL_MODEL, messages=messages, stream=True,
                             options={"temperature": 0, "num_predict": 16}))
    assert len(parts) > 3 and parts[-1].done and parts[-1].eval_count
    assert "".join(p.message.content or "" for p in parts) == whole.message.content


def test_format_json_schema_is_enforced(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome", "Oslo"]}},
              "required": ["city"]}
    result = client.generate(model=REAL_MODEL, prompt=PARIS_PROMPT, format=schema,
                             options={"temperature": 0, "num_predict": 32})
    assert json.loads(result.response)["city"] in {"Paris", "Rome", "Oslo"}
    as_json = client.chat(model=REAL_MODEL, format="json",
                          messages=[{"role": "user", "content": "Give a JSON object."}],
                          options={"temperature": 0, "num_predict": 48})
    assert as_json.message.content and as_json.message.content.lstrip().startswith("{")


def test_keep_alive_load_ps_and_unload(client: ollama.Client) -> None:
    loaded = client.generate(model=REAL_MODEL, keep_alive="10m")
    assert loaded.done_reason == "load"
    running = {m.model: m for m in client.ps().models}
    expires = running[REAL_MODEL].expires_at
    assert expires is not None and 500 < expires.timestamp() - time.time() < 700
    unloaded = client.generate(model=REAL_MODEL, keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert REAL_MODEL not in [m.model for m in client.ps().models]
    # keep_alive 0 on a real request: answered, then unloaded by the reaper
    client.generate(model=REAL_MODEL, prompt=COUNT_PROMPT, options=GREEDY, keep_alive=0)
    _wait_until(lambda: REAL_MODEL not in [m.model for m in client.ps().models])


def test_copy_and_delete(client: ollama.Client) -> None:
    assert client.copy(REAL_MODEL, "gemma-copy:v1").status == "success"
    assert "gemma-copy:v1" in [m.model for m in client.list().models]
    assert client.delete("gemma-copy:v1").status == "success"
    assert "gemma-copy:v1" not in [m.model for m in client.list().models]
    assert REAL_MODEL in [m.model for m in client.list().models], "shared blob kept"
    with pytest.raises(ollama.ResponseError) as missing:
        client.delete("gemma-copy:v1")
    assert missing.value.status_code == 404 and "not found" in missing.value.error


def test_errors_in_ollama_shape(client: ollama.Client, api: ServerProcess) -> None:
    with pytest.raises(ollama.ResponseError) as unknown:
        client.generate(model="no-such-model", prompt="hi")
    assert unknown.value.status_code == 404 and "not found" in unknown.value.error
    for body in ({"prompt": "hi"}, {"model": REAL_MODEL, "options": {"temperature": 9}},
                 {"model": REAL_MODEL, "prompt": "hi", "keep_alive": "soon"}):
        response = httpx.post(f"{api.url}/api/generate", json=body)
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str)
    assert httpx.post(f"{api.url}/api/generate", content=b"{").status_code == 400


def test_chat_with_tools_gives_valid_calls_or_text(client: ollama.Client) -> None:
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    whole = client.chat(model=REAL_MODEL, messages=messages, tools=[tool],
                        options={"temperature": 0, "num_predict": 24})
    parts = list(client.chat(model=REAL_MODEL, messages=messages, tools=[tool], stream=True,
                             options={"temperature": 0, "num_predict": 24}))
    streamed_calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [c.function.name for c in streamed_calls] == [
        c.function.name for c in whole.message.tool_calls or []]
    for call in whole.message.tool_calls or []:
        assert call.function.name == "get_weather"
        assert isinstance(call.function.arguments["city"], str)
    if not whole.message.tool_calls:
        assert whole.message.content and not whole.message.content.lstrip().startswith("{")
    # a tool result fed back is rendered and answered
    follow = client.chat(model=REAL_MODEL, options={"temperature": 0, "num_predict": 8},
                         tools=[tool], messages=[
                             *messages,
                             {"role": "assistant", "content": "", "tool_calls": [
                                 {"function": {"name": "get_weather",
                                               "arguments": {"city": "Paris"}}}]},
                             {"role": "tool", "content": "18 C, sunny",
                              "tool_name": "get_weather"}])
    assert follow.done


def test_embed(client: ollama.Client) -> None:
    result = client.embed(model=BUNDLED_EMBEDDING_MODEL,
                          input=["The cat sat on the mat.", "A cat was sitting on a rug."])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) == 384
    legacy = client.embeddings(model=BUNDLED_EMBEDDING_MODEL, prompt="The cat sat on the mat.")
    assert list(legacy.embedding) == pytest.approx(result.embeddings[0], abs=1e-6)


def test_clients_probe_the_root(api: ServerProcess) -> None:
    assert httpx.get(api.url).text == "deskai is running"
    assert httpx.head(api.url).status_code == 200


def test_pull_resumes_after_the_server_is_killed(ollama_home: Path, hub: FakeHub,
                                                 api: ServerProcess) -> None:
    data = hub.repos[REPO]["pullme-Q4_K_M.gguf"].data
    hub.throttle = 400_000
    first = ServerProcess(ollama_home, env={"HF_ENDPOINT": hub.url})
    statuses: list[ollama.ProgressResponse] = []
    try:
        for status in ollama.Client(host=first.url).pull(f"hf.co/{REPO}", stream=True):
            statuses.append(status)
            if (status.completed or 0) > len(data) // 3:
                first.process.send_signal(signal.SIGKILL)  # mid-download, no clean-up
                break
    finally:
        first.process.wait(timeout=10)
        first.stop()
    assert statuses[0].status == "pulling manifest"
    assert statuses[-1].digest == f"sha256:{sha256_hex(data)}" and statuses[-1].total == len(data)
    listed = [m.model for m in ollama.Client(host=api.url).list().models]
    assert f"hf.co/{REPO}:latest" not in listed

    hub.throttle = None
    second = ServerProcess(ollama_home, env={"HF_ENDPOINT": hub.url})
    try:
        done = list(ollama.Client(host=second.url).pull(f"hf.co/{REPO}", stream=True))
        assert [d.status for d in done][-3:] == ["verifying sha256 digest", "writing manifest",
                                                 "success"]
        ranges = [r[2] for r in hub.file_requests("/resolve/")]
        assert ranges[0] is None and ranges[-1] and ranges[-1] != "bytes=0-"
        listed = {m.model: m for m in ollama.Client(host=second.url).list().models}
        assert listed[f"hf.co/{REPO}:latest"].digest == sha256_hex(data)
    finally:
        second.stop()


def test_pull_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as bad:
        client.pull("llama3")
    assert bad.value.status_code == 400 and "hf.co/USER/REPO" in bad.value.error
    with pytest.raises(ollama.ResponseError, match="no Hugging Face repository"):
        client.pull("hf.co/tester/absent", stream=False)
    with pytest.raises(ollama.ResponseError, match="no Hugging Face repository"):
        list(client.pull("hf.co/tester/absent", stream=True))


def _wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached")

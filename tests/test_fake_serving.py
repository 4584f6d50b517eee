"""The real app serving a second backend (the fake engine): the routes cannot tell.

Fast: no model is loaded and no process started; the same routes, middlewares and HTTP as
``deskai serve``, driven with the official clients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest
from conftest import FAKE_MODEL, AppThread, fake_serving, running_gauges_during_streams
from fake_engine import FakeBackend

from deskai.cli.chat import ServerBackend
from deskai.client import ServerClient
from deskai.engine import SamplingParams

MODEL = FAKE_MODEL
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppThread, FakeBackend]]:
    with fake_serving(tmp_path_factory.mktemp("fake-home")) as (server, backend):
        yield server, backend  # type: ignore[misc]


@pytest.fixture(scope="module")
def app_server(served: tuple[AppThread, FakeBackend]) -> AppThread:
    return served[0]


@pytest.fixture(scope="module")
def backend(served: tuple[AppThread, FakeBackend]) -> FakeBackend:
    return served[1]


@pytest.fixture
def client(app_server: AppThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app_server.url}/v1", api_key="unused", max_retries=0)


def test_completions_stream_and_whole(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="hello there", max_tokens=5)
    assert whole.choices[0].text == "hello" and whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 5
    pieces = [c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="abc", max_tokens=50, stream=True) if c.choices]
    assert "".join(pieces) == "abc"


def test_chat_streams_and_n_choices(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, n=2, max_tokens=8,
                                           messages=[{"role": "user", "content": "hi"}])
    assert [c.message.content for c in reply.choices] == ["User: hi"] * 2
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL, stream=True, max_tokens=8, messages=[{"role": "user", "content": "hi"}]))
    assert streamed == "User: hi"


def test_errors_keep_their_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="x" * 600, max_tokens=2)
    assert caught.value.body["code"] == "context_length_exceeded"  # type: ignore[index]


def test_ollama_client_sees_the_same_engine(app_server: AppThread) -> None:
    api = ollama.Client(host=app_server.url)
    assert api.generate(model=MODEL, prompt="ping", raw=True).response == "ping"
    parts = [p.message.content for p in api.chat(
        model=MODEL, messages=[{"role": "user", "content": "yo"}], stream=True)]
    assert "".join(parts) == "User: yo\nAssistant:"
    assert [m.model for m in api.ps().models] == [MODEL]


def test_both_apis_send_the_same_prompt_for_the_same_tools(
        client: openai.OpenAI, app_server: AppThread, backend: FakeBackend) -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"}]
    before = len(backend.submitted)
    client.chat.completions.create(model=MODEL, messages=messages, tools=[TOOL],  # type: ignore[arg-type, list-item]
                                   max_tokens=4)
    # raw JSON: the ollama client would reorder the schema's keys on the way
    httpx.post(f"{app_server.url}/api/chat", json={
        "model": MODEL, "messages": messages, "tools": [TOOL], "stream": False,
        "options": {"num_predict": 4}}).raise_for_status()
    via_openai, via_ollama = backend.submitted[before:]
    engine = backend.engines[0]

    def text(prompt: str | object) -> str:
        return prompt if isinstance(prompt, str) else engine.detokenize(prompt)  # type: ignore[arg-type]

    assert text(via_openai.prompt) == text(via_ollama.prompt)
    assert text(via_openai.prompt).count("get_weather") == 1
    assert via_openai.params.structured == via_ollama.params.structured
    assert via_openai.params.structured is not None and via_openai.params.structured.or_text


def test_deskai_run_sends_every_sampling_setting(app_server: AppThread,
                                                 backend: FakeBackend) -> None:
    """``deskai run`` through a server loses nothing: the engine receives what the CLI had."""
    sent = SamplingParams(max_tokens=7, temperature=0.4, top_p=0.8, top_k=7, min_p=0.2,
                          seed=42, stop=["zz"], repeat_penalty=1.3, presence_penalty=0.5,
                          frequency_penalty=-0.5, logit_bias={65: 2.0})
    remote = ServerBackend(ServerClient(app_server.url), MODEL)
    try:
        assert "".join(remote.complete("abcdefghij", sent)) == "abcdefg"
    finally:
        remote.close()
    received = backend.submitted[-1].params
    assert received.top_k == 7 and received.min_p == 0.2
    assert received == sent, [f.name for f in dataclasses.fields(sent)
                              if getattr(sent, f.name) != getattr(received, f.name)]


def test_metrics_while_16_streams_run(app_server: AppThread) -> None:
    bodies = [{"model": MODEL, "prompt": f"stream number {i} " * 4, "max_tokens": 60}
              for i in range(16)]
    running = running_gauges_during_streams(app_server.url, bodies)
    assert max(running) == 4  # every slot was seen busy, and never more than the slots


def test_embeddings_of_a_text_model_are_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input="hi")
    assert caught.value.body["param"] == "model"  # type: ignore[index]


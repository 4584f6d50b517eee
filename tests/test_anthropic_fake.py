"""Anthropic's Messages API over the fake echo engine, driven with the official ``anthropic``
client: shapes, streams, tool calls, stop reasons, errors, cancellation.

Fast: the fake "model" answers a prompt by echoing it back byte by byte, so what the server
built as the prompt is what comes back (and ``backend.submitted`` holds it too).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import Any, cast

import anthropic
import httpx
import openai
import pytest
from conftest import FAKE_MODEL, AppThread, fake_serving
from fake_engine import FakeBackend
from starlette.requests import ClientDisconnect

from deskai.engine import EngineOptions
from deskai.engine.types import Delta, FinishReason
from deskai.errors import EngineError
from deskai.server.anthropic.stream import MessageEvents, sse_response
from deskai.server.app import ServerSettings

MODEL = FAKE_MODEL
WEATHER: Any = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
CALL = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}'
HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppThread, FakeBackend]]:
    # a byte per token: room for a tools prompt
    options = EngineOptions(context_length=4096, parallel=4, max_queue=64)
    with fake_serving(tmp_path_factory.mktemp("anthropic-home"), options=options) as (
            server, backend):
        yield server, backend  # type: ignore[misc]


@pytest.fixture(scope="module")
def server(served: tuple[AppThread, FakeBackend]) -> AppThread:
    return served[0]


@pytest.fixture(scope="module")
def backend(served: tuple[AppThread, FakeBackend]) -> FakeBackend:
    return served[1]


@pytest.fixture
def client(server: AppThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)


def prompt_text(backend: FakeBackend, index: int = -1) -> str:
    prompt = backend.submitted[index].prompt
    return prompt if isinstance(prompt, str) else backend.engines[0].detokenize(prompt)


def texts(message: Any) -> list[str]:
    return [block.text for block in message.content if block.type == "text"]


def tool_uses(message: Any) -> list[tuple[str, Any]]:
    return [(block.name, block.input) for block in message.content if block.type == "tool_use"]


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        name, data = chunk.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        events.append((name[len("event: "):], json.loads(data[len("data: "):])))
    return events


# -- answers --------------------------------------------------------------------------------


def test_a_message_in_anthropics_shape(client: anthropic.Anthropic,
                                       backend: FakeBackend) -> None:
    message = client.messages.create(model=MODEL, max_tokens=64, messages=HI,
                                     metadata={"user_id": "someone"})
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert texts(message) == ["User: hi\nAssistant:"]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == len(backend.submitted[-1].prompt) == 20  # BOS too
    assert message.usage.output_tokens == 19
    counted = client.messages.count_tokens(model=MODEL, messages=HI)
    assert counted.input_tokens == message.usage.input_tokens


def test_system_and_text_blocks_make_the_prompt(client: anthropic.Anthropic,
                                                backend: FakeBackend) -> None:
    client.messages.create(
        model=MODEL, max_tokens=2, system=[{"type": "text", "text": "Be brief."},
                                           {"type": "text", "text": "Be kind."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "one"},
                                               {"type": "text", "text": "two"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                  {"role": "user", "content": "three"}])
    assert prompt_text(backend) == ("Be brief.\n\nBe kind.\n\nUser: one\n\ntwo\n"
                                    "Assistant: ok\nUser: three\nAssistant:")


def test_sampling_reaches_the_engine(client: anthropic.Anthropic, backend: FakeBackend) -> None:
    # this client no longer lists temperature, top_p and top_k: they go as extra fields
    client.messages.create(model=MODEL, max_tokens=3, messages=HI, stop_sequences=["zz", "yy"],
                           extra_body={"temperature": 0.3, "top_p": 0.7, "top_k": 5})
    params = backend.submitted[-1].params
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k) == (3, 0.3,
                                                                                  0.7, 5)
    # the caller's stops first, then the format's
    assert params.stop == ["zz", "yy", "\nUser:", "\nTool result:"]
    client.messages.create(model=MODEL, max_tokens=3, messages=HI)
    defaults = backend.submitted[-1].params
    assert defaults.top_p == 1.0 and defaults.temperature == 0.8 and defaults.top_k == 40


def test_stop_reasons(client: anthropic.Anthropic) -> None:
    cut = client.messages.create(model=MODEL, max_tokens=4, messages=HI)
    assert cut.stop_reason == "max_tokens" and texts(cut) == ["User"]
    stopped = client.messages.create(model=MODEL, max_tokens=64, messages=HI,
                                     stop_sequences=["nope", ": h"])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == ": h"
    assert texts(stopped) == ["User"]
    # the chat format's own stop ("\nUser:") ends the turn: that is not the caller's
    turn = client.messages.create(model=MODEL, max_tokens=64, system="sys", messages=HI)
    assert turn.stop_reason == "end_turn" and turn.stop_sequence is None
    assert texts(turn) == ["sys\n"]


def test_streams_as_the_client_expects(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model=MODEL, max_tokens=64, messages=HI)
    with client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and ["".join(pieces)] == texts(whole) == texts(final)
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        whole.stop_reason, whole.usage.input_tokens, whole.usage.output_tokens)
    names = [event.type for event in client.messages.create(
        model=MODEL, max_tokens=64, messages=HI, stream=True)]
    assert names[:2] == ["message_start", "content_block_start"]  # the client skips pings
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}


def test_raw_stream_has_event_lines_and_a_ping(server: AppThread) -> None:
    reply = httpx.post(f"{server.url}/v1/messages", json={
        "model": MODEL, "max_tokens": 3, "stream": True, "messages": HI})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.text)
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_delta", "content_block_stop", "message_delta",
        "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["usage"] == {"input_tokens": 20, "output_tokens": 0}
    assert events[-2][1] == {"type": "message_delta", "usage": {"output_tokens": 3},
                             "delta": {"stop_reason": "max_tokens", "stop_sequence": None}}


# -- tools ----------------------------------------------------------------------------------
# The echo answers with the prompt, whose first line is the system message: a system message
# that is a call makes the "model" call a tool; "\n\n" (after the system message) ends it.


def test_a_tool_call_is_a_tool_use_block(client: anthropic.Anthropic,
                                         backend: FakeBackend) -> None:
    message = client.messages.create(model=MODEL, max_tokens=200, system=CALL, messages=HI,
                                     tools=[WEATHER], tool_choice={"type": "any"},
                                     stop_sequences=["\n\n"])
    assert message.stop_reason == "tool_use" and message.stop_sequence is None
    assert [block.type for block in message.content] == ["tool_use"]
    assert tool_uses(message) == [("get_weather", {"city": "Paris"})]
    assert all(block.id.startswith("toolu_") for block in message.content
               if isinstance(block, anthropic.types.ToolUseBlock))
    structured = backend.submitted[-1].params.structured
    assert structured is not None and not structured.or_text  # "any": calls only
    with client.messages.stream(model=MODEL, max_tokens=200, system=CALL, messages=HI,
                                tools=[WEATHER], stop_sequences=["\n\n"]) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use"
    assert [block.type for block in streamed.content] == ["tool_use"]
    assert tool_uses(streamed) == [("get_weather", {"city": "Paris"})]


def test_a_streamed_call_is_input_json_deltas(server: AppThread) -> None:
    reply = httpx.post(f"{server.url}/v1/messages", json={
        "model": MODEL, "max_tokens": 200, "stream": True, "system": CALL, "messages": HI,
        "tools": [WEATHER], "stop_sequences": ["\n\n"]})
    events = sse_events(reply.text)
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    block = events[2][1]["content_block"]
    assert block["type"] == "tool_use" and block["input"] == {}
    delta = events[3][1]["delta"]
    assert delta["type"] == "input_json_delta"
    assert json.loads(delta["partial_json"]) == {"city": "Paris"}


def test_a_call_cut_by_max_tokens_keeps_the_whole_calls(client: anthropic.Anthropic) -> None:
    two_calls = CALL.replace("]}", ', {"name": "get_weather", "arguments": {"city": "Rome"}}]}')
    for stream in (False, True):
        kwargs: dict[str, Any] = dict(model=MODEL, max_tokens=len(CALL) + 10, system=two_calls,
                                      messages=HI, tools=[WEATHER])
        message: Any
        if stream:
            with client.messages.stream(**kwargs) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(**kwargs)
        assert message.stop_reason == "max_tokens"
        assert [block.type for block in message.content] == ["tool_use"]
        assert tool_uses(message) == [("get_weather", {"city": "Paris"})]


def test_output_that_is_no_call_comes_back_as_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=200, system='{"oops',
                                     messages=HI, tools=[WEATHER], stop_sequences=["\n\n"])
    assert message.stop_reason == "stop_sequence"
    assert [block.type for block in message.content] == ["text"]
    assert texts(message) == ['{"oops']


def test_both_apis_build_the_same_prompt_for_a_tool_conversation(
        client: anthropic.Anthropic, server: AppThread, backend: FakeBackend) -> None:
    """A call and its result, through /v1/messages and /v1/chat/completions: one prompt."""
    system, question = "Be brief.", "Weather in Paris?"
    client.messages.create(
        model=MODEL, max_tokens=4, system=system, tools=[WEATHER],
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "sunny, 21 C"}]},
                {"type": "text", "text": "And tomorrow?"}]}])
    via_anthropic = backend.submitted[-1]
    chat = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    chat.chat.completions.create(
        model=MODEL, max_tokens=4,
        tools=[{"type": "function", "function": {
            "name": WEATHER["name"], "description": WEATHER["description"],
            "parameters": WEATHER["input_schema"]}}],
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [{
                "id": "toolu_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21 C"},
            {"role": "user", "content": "And tomorrow?"}])
    via_openai = backend.submitted[-1]
    assert prompt_text(backend, -2) == prompt_text(backend, -1)
    assert "Tool result: sunny, 21 C" in prompt_text(backend)
    assert '"arguments": {"city": "Paris"}' in prompt_text(backend)
    assert via_anthropic.params.structured == via_openai.params.structured
    assert via_anthropic.params.structured is not None


def test_tool_choice_maps_to_openais(client: anthropic.Anthropic, backend: FakeBackend) -> None:
    def schema_of(**tool_choice: Any) -> Any:
        choice: Any = tool_choice
        tools: Any = [WEATHER, {**WEATHER, "name": "get_time"}]
        client.messages.create(model=MODEL, max_tokens=1, messages=HI, tools=tools,
                               tool_choice=choice)
        structured = backend.submitted[-1].params.structured
        return None if structured is None else structured.json_schema

    named = schema_of(type="tool", name="get_time")["properties"]["tool_calls"]
    assert named["items"]["properties"]["name"] == {"const": "get_time"}
    assert schema_of(type="any", disable_parallel_tool_use=True)["properties"][
        "tool_calls"]["maxItems"] == 1
    assert schema_of(type="none") is None
    assert "get_time" not in prompt_text(backend)  # "none" shows no tools


def test_output_config_format_constrains_the_answer(client: anthropic.Anthropic,
                                                    backend: FakeBackend) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"], "additionalProperties": False}
    client.messages.create(model=MODEL, max_tokens=4, messages=HI,
                           output_config={"format": {"type": "json_schema", "schema": schema}})
    structured = backend.submitted[-1].params.structured
    assert structured is not None and structured.json_schema == schema
    assert structured.field == "output_config.format"
    with pytest.raises(anthropic.BadRequestError) as both:
        client.messages.create(model=MODEL, max_tokens=4, messages=HI, tools=[WEATHER],
                               output_config={"format": {"type": "json_schema",
                                                         "schema": schema}})
    assert "cannot be combined with tools" in error_of(both)["message"]


# -- errors ---------------------------------------------------------------------------------


def error_of(caught: pytest.ExceptionInfo[anthropic.APIStatusError]) -> dict[str, Any]:
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    return body["error"]


def test_errors_in_anthropics_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=8, messages=HI)
    assert error_of(missing)["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as zero:
        client.messages.create(model=MODEL, max_tokens=0, messages=HI)
    assert error_of(zero) == {"type": "invalid_request_error", "message":
                              "invalid value for 'max_tokens': Input should be greater than "
                              "or equal to 1"}
    with pytest.raises(anthropic.BadRequestError) as hot:
        client.messages.create(model=MODEL, max_tokens=8, messages=HI,
                               extra_body={"temperature": 3})
    assert "temperature" in error_of(hot)["message"]
    with pytest.raises(anthropic.NotFoundError) as counted:
        client.messages.count_tokens(model="nope", messages=HI)
    assert error_of(counted)["type"] == "not_found_error"


@pytest.mark.parametrize(("body", "words"), [
    ({"messages": HI}, "missing required parameter 'max_tokens'"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}}]}]},
     "image blocks are not supported"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {}}]}]}]}, "image blocks are not supported"),
    ({"max_tokens": 8, "messages": [*HI, {"role": "assistant", "content": "The answer is"}]},
     "prefilled assistant turn"),
    ({"max_tokens": 8, "messages": HI, "tools": [
        {"type": "web_search_20250305", "name": "web_search"}]}, "server tool"),
    ({"max_tokens": 8, "messages": HI, "tools": [{"name": "x"}]}, "input_schema"),
    ({"max_tokens": 8, "messages": HI, "tool_choice": {"type": "any"}}, "no tools"),
    ({"max_tokens": 8, "messages": HI, "tools": [WEATHER],
      "tool_choice": {"type": "tool", "name": "other"}}, "'other', which is not in tools"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
     "'type'"),
    ({"max_tokens": 8, "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "n", "input": "x"}]}, *HI]}, "'input'"),
    ({"max_tokens": 8, "messages": HI, "stop_sequences": [""]}, "must not be empty"),
])
def test_bad_requests_are_400s_that_say_why(server: AppThread, body: dict[str, Any],
                                            words: str) -> None:
    reply = httpx.post(f"{server.url}/v1/messages", json={"model": MODEL, **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert words in error["error"]["message"]


def test_unknown_routes_and_other_apis_keep_their_shapes(server: AppThread) -> None:
    unknown = httpx.post(f"{server.url}/v1/messages/batches", json={})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"
    openai_shaped = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "nope",
                                                                          "messages": HI})
    assert openai_shaped.json()["error"]["code"] == "model_not_found"
    ollama_shaped = httpx.post(f"{server.url}/api/chat", json={"model": "nope",
                                                               "messages": HI})
    assert isinstance(ollama_shaped.json()["error"], str)


def test_the_edge_middlewares_answer_in_anthropics_shape(tmp_path: Path) -> None:
    settings = ServerSettings(api_key="right", max_body_bytes=2000)
    with fake_serving(tmp_path / "home", settings) as (server, _):
        wrong = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as denied:
            wrong.messages.create(model=MODEL, max_tokens=8, messages=HI)
        assert error_of(denied)["type"] == "authentication_error"
        right = anthropic.Anthropic(base_url=server.url, api_key="right", max_retries=0)
        assert right.messages.create(model=MODEL, max_tokens=4, messages=HI).content
        with pytest.raises(anthropic.APIStatusError) as too_big:
            right.messages.create(model=MODEL, max_tokens=4,
                                  messages=[{"role": "user", "content": "x" * 3000}])
        assert too_big.value.status_code == 413
        assert error_of(too_big)["type"] == "request_too_large"
        rebound = httpx.post(f"{server.url}/v1/messages", headers={"host": "evil.example"},
                             json={})
        assert rebound.status_code == 403
        assert rebound.json()["error"]["type"] == "permission_error"


def test_the_openapi_document_shows_anthropics_errors(server: AppThread) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        responses = document["paths"][path]["post"]["responses"]
        schema = responses["400"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/AnthropicError")
    assert "text/event-stream" in document["paths"]["/v1/messages"]["post"]["responses"][
        "200"]["content"]


# -- streams that end early -----------------------------------------------------------------


def test_a_client_that_leaves_cancels_the_generation(tmp_path: Path) -> None:
    with fake_serving(tmp_path / "home") as (server, backend):
        fake = cast(FakeBackend, backend)
        fake.step_seconds = 0.05  # 300 bytes of echo: 15 s, unless cancelled
        body = {"model": MODEL, "max_tokens": 400, "stream": True,
                "messages": [{"role": "user", "content": "x" * 300}]}
        with httpx.stream("POST", f"{server.url}/v1/messages", json=body) as reply:
            lines = reply.iter_lines()
            while "content_block_delta" not in next(lines):
                pass
        manager = cast(Any, server)._server.config.app.state.manager
        engine = fake.engines[0]
        deadline = time.monotonic() + 5
        while engine.stats().total.running or manager.loaded()[0].users:
            assert time.monotonic() < deadline, "the generation outlived its client"
            time.sleep(0.02)


class _FailingStream:
    """Stands in for a DeltaStream whose engine fails after the first piece."""

    def __init__(self) -> None:
        self.closed = False
        self._sent = False

    def __aiter__(self) -> _FailingStream:
        return self

    async def __anext__(self) -> Delta:
        if self._sent:
            raise EngineError("the engine fell over")
        self._sent = True
        return Delta(text="Hel", token_ids=(1,), finish_reason=None, prompt_tokens=3,
                     completion_tokens=1)

    def close(self) -> None:
        self.closed = True


def test_an_error_mid_stream_is_an_error_event() -> None:
    stream, released = _FailingStream(), []
    turn = MessageEvents("msg_1", MODEL, 3, None, lambda token: b"")
    response = sse_response(turn, stream,  # type: ignore[arg-type]
                            on_close=lambda: released.append(True))

    async def read(body: AsyncIterable[Any]) -> str:
        return "".join([part if isinstance(part, str) else part.decode()
                        async for part in body])

    events = sse_events(asyncio.run(read(response.body_iterator)))
    assert [name for name, _ in events][-2:] == ["content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "api_error",
                                                        "message": "the engine fell over"}}
    assert stream.closed and released == [True]


def test_a_client_gone_before_the_first_event_still_frees_the_slot() -> None:
    """The events' generator never starts, so its ``finally`` never runs: the response
    itself cancels the generation and gives the model back."""
    stream, released = _FailingStream(), []
    turn = MessageEvents("msg_1", MODEL, 3, None, lambda token: b"")
    response = sse_response(turn, stream,  # type: ignore[arg-type]
                            on_close=lambda: released.append(True))

    async def gone(message: Any) -> None:
        raise OSError("the client left")

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        asyncio.run(response(scope, receive, gone))
    assert stream.closed and released == [True]


def test_a_cancelled_generation_is_no_answer() -> None:
    turn = MessageEvents("msg_1", MODEL, 3, None, lambda token: b"")
    with pytest.raises(EngineError):
        turn.events(Delta(text="", token_ids=(), finish_reason=FinishReason.CANCELLED,
                          prompt_tokens=3, completion_tokens=0))

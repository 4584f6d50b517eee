"""The Responses API through the official ``openai`` client: fast over the fake engine (what
prompt each turn builds, stored turns, events), then on the real model (a forced function
call, its output fed back through ``previous_response_id``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
from conftest import FAKE_MODEL, REAL_MODEL, AppThread, ServerProcess, fake_serving
from fake_engine import FakeBackend

from deskai.server.responses.store import ResponseStore, StoredResponse

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppThread, FakeBackend]]:
    with fake_serving(tmp_path_factory.mktemp("responses") / "home") as (server, backend):
        yield server, backend  # type: ignore[misc]


@pytest.fixture(scope="module")
def client(served: tuple[AppThread, FakeBackend]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served[0].url}/v1", api_key="x", max_retries=0)


def last_prompt(backend: FakeBackend) -> str:
    prompt = backend.submitted[-1].prompt
    return prompt if isinstance(prompt, str) else backend.engines[0].detokenize(prompt)


def test_create_answers_and_reports_a_cut(client: openai.OpenAI,
                                          served: tuple[AppThread, FakeBackend]) -> None:
    whole = client.responses.create(model=FAKE_MODEL, input="hi", instructions="Be brief.")
    # the echo stops at the fallback transcript's stop string, "\nUser:"
    assert whole.status == "completed" and whole.output_text == "Be brief.\n"
    assert last_prompt(served[1]) == "Be brief.\n\nUser: hi\nAssistant:"
    assert whole.usage is not None and whole.usage.output_tokens >= len(whole.output_text)
    cut = client.responses.create(model=FAKE_MODEL, input="hi", max_output_tokens=4)
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens" and cut.output_text == "User"


def test_streamed_events_in_order(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model=FAKE_MODEL, input="hey", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text == "User: hey\nAssistant:"


def test_a_stored_turn_is_continued_listed_and_deleted(
        client: openai.OpenAI, served: tuple[AppThread, FakeBackend]) -> None:
    first = client.responses.create(model=FAKE_MODEL, input="first question",
                                    max_output_tokens=5)
    second = client.responses.create(model=FAKE_MODEL, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "second question"}]}],
        previous_response_id=first.id, max_output_tokens=5)
    assert last_prompt(served[1]) == ("User: first question\nAssistant: User:\n"
                                      "User: second question\nAssistant:")
    assert second.previous_response_id == first.id
    assert client.responses.retrieve(first.id).output_text == first.output_text
    items = client.responses.input_items.list(second.id)
    assert [item.content[0].text for item in items.data] == ["second question"]  # type: ignore[union-attr]
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=FAKE_MODEL, input="x", previous_response_id=first.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    response = client.responses.create(model=FAKE_MODEL, input="x", store=False,
                                       max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"type": "web_search_call"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content"),
    ({"input": "x", "previous_response_id": "../../etc/passwd"}, "previous_response_id"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools"),
    ({"input": "x", "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "schema": {
        "type": "string", "maxLength": -1}}}}, "text.format"),
])
def test_bad_requests_are_400s_naming_the_field(served: tuple[AppThread, FakeBackend],
                                                body: dict, param: str) -> None:
    response = httpx.post(f"{served[0].url}/v1/responses", json={"model": FAKE_MODEL, **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_the_store_is_bounded_in_count_and_age(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path, max_count=3, max_age=3600)

    def save(index: int) -> str:
        response_id = f"resp_{index:032x}"
        store.save(StoredResponse({"id": response_id, "output": []}, [], []))
        return response_id

    ids = [save(i) for i in range(5)]
    kept = sorted(p.stem for p in tmp_path.glob("resp_*.json"))
    assert kept == ids[2:]
    old = tmp_path / f"{ids[2]}.json"
    stale = time.time() - 7200
    import os
    os.utime(old, (stale, stale))
    save(9)
    assert not old.exists()


# -- the real model ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)


def test_a_forced_call_and_its_output_in_a_second_turn(real: openai.OpenAI) -> None:
    first = real.responses.create(model=REAL_MODEL, input="What is the weather in Paris?",
                                  tools=[WEATHER], tool_choice="required",  # type: ignore[list-item]
                                  temperature=0, max_output_tokens=64)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["parameters"])
    second = real.responses.create(
        model=REAL_MODEL, previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                "output": '{"temperature_c": 21, "sky": "clear"}'}],
        temperature=0, max_output_tokens=24)
    assert second.status in ("completed", "incomplete")
    assert second.output and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # type: ignore[union-attr]


def test_a_streamed_call_sends_argument_events(real: openai.OpenAI) -> None:
    events = list(real.responses.create(
        model=REAL_MODEL, input="Weather in Oslo?", tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"}, temperature=0,
        max_output_tokens=64, stream=True))
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    jsonschema.validate(json.loads(done.arguments), WEATHER["parameters"])
    assert kinds[-1] in ("response.completed", "response.incomplete")


def test_plain_text_and_a_json_schema_format(real: openai.OpenAI) -> None:
    plain = real.responses.create(model=REAL_MODEL, input="Say hello.", temperature=0,
                                  max_output_tokens=12)
    assert plain.output_text
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"], "additionalProperties": False}
    shaped = real.responses.create(
        model=REAL_MODEL, input="Name a city as JSON.", temperature=0, max_output_tokens=48,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema}})
    assert shaped.status == "completed"  # a city of at most 20 characters fits 48 tokens
    jsonschema.validate(json.loads(shaped.output_text), schema)


def test_server_side_mcp_tools_run_and_their_results_reach_the_model(
        home_with_real_model: Path, tmp_path: Path) -> None:
    """``deskai serve --mcp``: a request names a configured server by label; deskai makes the
    model's calls itself (the server records them) and answers with the results in context."""
    from agents_support import calc_entry

    record = tmp_path / "calls.jsonl"
    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {"calc": calc_entry(record, "add")}}))
    proc = ServerProcess(home_with_real_model, "--parallel", "1", "--mcp", str(servers))
    try:
        client = openai.OpenAI(base_url=f"{proc.url}/v1", api_key="x", max_retries=0)
        response = client.responses.create(
            model=REAL_MODEL, input="Add 2 and 3.", tool_choice="required", temperature=0,
            max_output_tokens=48,
            tools=[{"type": "mcp", "server_label": "calc", "require_approval": "never"}])  # type: ignore[list-item]
        kinds = [item.type for item in response.output]
        assert kinds[0] == "mcp_list_tools" and "mcp_call" in kinds
        call = next(item for item in response.output if item.type == "mcp_call")
        assert call.server_label == "calc" and call.name == "add"
        made = [json.loads(line) for line in record.read_text().splitlines()]
        assert made and made[0]["tool"] == "add"
        assert call.output == f"SUM-IS {made[0]['a'] + made[0]['b']}" and call.error is None
        refused = httpx.post(f"{proc.url}/v1/responses", json={
            "model": REAL_MODEL, "input": "x", "tools": [
                {"type": "mcp", "server_label": "x", "server_url": "http://evil.example"}]})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "tools"
        events = list(client.responses.create(
            model=REAL_MODEL, input="Add 1 and 1.", tool_choice="required", temperature=0,
            max_output_tokens=48, stream=True,
            tools=[{"type": "mcp", "server_label": "calc", "require_approval": "never"}]))  # type: ignore[list-item]
        assert events[0].type == "response.created"
        assert events[-1].type in ("response.completed", "response.incomplete")
        assert any(e.type == "response.output_item.done" and e.item.type == "mcp_call"
                   for e in events)
    finally:
        proc.stop()


def test_mcp_tools_need_a_configured_server(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=FAKE_MODEL, input="x", tools=[  # type: ignore[list-item]
            {"type": "mcp", "server_label": "calc", "require_approval": "never"}])
    assert "--mcp" in refused.value.message

"""Tools, JSON schemas and the rest of OpenAI's surface, against the real model."""

from __future__ import annotations

import json
import math
import re

import jsonschema
import openai
import pytest
from conftest import REAL_MODEL, ServerProcess

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Time in a timezone",
                 "parameters": {"type": "object",
                                "properties": {"timezone": {"type": "string", "maxLength": 40}},
                                "required": ["timezone"], "additionalProperties": False}},
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "country": {"type": "string", "enum": ["France", "Italy", "Spain"]},
        "landmark": {"type": "string", "maxLength": 40},
    },
    "required": ["city", "country", "landmark"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def schema_of(tool: dict) -> dict:
    return tool["function"]["parameters"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_required_tool_call_arguments_always_validate(client: openai.OpenAI, seed: int) -> None:
    result = client.chat.completions.create(
        model=REAL_MODEL, messages=ASK, tools=[WEATHER_TOOL, TIME_TOOL],  # type: ignore[list-item]
        tool_choice="required", temperature=0.9, seed=seed, max_tokens=400)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert calls and all(call.id.startswith("call_") for call in calls)
    tools = {"get_weather": WEATHER_TOOL, "get_time": TIME_TOOL}
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments),
                            schema_of(tools[call.function.name]))


def test_named_tool_choice_calls_that_tool(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model=REAL_MODEL, messages=ASK, tools=[WEATHER_TOOL, TIME_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False, temperature=0, max_tokens=60)
    calls = result.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls] == ["get_time"]
    jsonschema.validate(json.loads(calls[0].function.arguments), schema_of(TIME_TOOL))


def test_streamed_tool_call_deltas_are_keyed_by_index(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=REAL_MODEL, messages=ASK, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=60,
        stream=True)
    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            names[delta.index] = names.get(delta.index, "") + (delta.function.name or "")
            arguments[delta.index] = arguments.get(delta.index, "") + (
                delta.function.arguments or "")
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert names and set(names.values()) == {"get_weather"}
    for text in arguments.values():
        jsonschema.validate(json.loads(text), schema_of(WEATHER_TOOL))


def test_tool_results_are_fed_back(client: openai.OpenAI) -> None:
    messages = [*ASK,
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "get_weather",
                                 "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees, sunny"}]
    result = client.chat.completions.create(model=REAL_MODEL, messages=messages,  # type: ignore[arg-type]
                                            tools=[WEATHER_TOOL], tool_choice="none",  # type: ignore[list-item]
                                            temperature=0, max_tokens=20)
    assert result.choices[0].message.content
    assert result.choices[0].message.tool_calls is None


def test_auto_tool_choice_gives_text_or_a_valid_call(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model=REAL_MODEL, messages=ASK, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto", temperature=0, max_tokens=40)
    message = result.choices[0].message
    if message.tool_calls:
        for call in message.tool_calls:
            jsonschema.validate(json.loads(call.function.arguments), schema_of(WEATHER_TOOL))
    else:
        assert message.content is not None and not message.content.lstrip().startswith("{")


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_parses_and_validates(client: openai.OpenAI, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": CITY_SCHEMA}}
    kwargs = dict(model=REAL_MODEL, temperature=0, max_tokens=80, response_format=fmt,
                  messages=[{"role": "user", "content": "Where is the Eiffel Tower?"}])
    if stream:
        text = "".join(c.choices[0].delta.content or ""
                       for c in client.chat.completions.create(**kwargs, stream=True))  # type: ignore[call-overload]
    else:
        text = client.chat.completions.create(**kwargs).choices[0].message.content or ""  # type: ignore[call-overload]
    jsonschema.validate(json.loads(text), CITY_SCHEMA)


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model=REAL_MODEL, temperature=0.7, seed=5, max_tokens=60,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe Paris as JSON."}])
    assert isinstance(json.loads(result.choices[0].message.content or ""), dict)


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "integer", "minimum": 0}, "minimum"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": "string", "format": "email"}, "format"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
    ({"type": "object", "properties": {"a": {"type": "number", "multipleOf": 2}}}, "multipleOf"),
])
def test_unenforceable_schema_is_refused_not_ignored(client: openai.OpenAI, schema: dict,
                                                     keyword: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=REAL_MODEL, messages=ASK, max_tokens=5,
            response_format={"type": "json_schema", "json_schema": {"name": "x",
                                                                    "schema": schema}})
    assert keyword in caught.value.message
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]


def test_logprobs_chat_and_completions(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model=REAL_MODEL, messages=ASK, max_tokens=4,
                                          temperature=0, logprobs=True, top_logprobs=3)
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert len(content) == chat.usage.completion_tokens  # type: ignore[union-attr]
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert math.isclose(entry.logprob, entry.top_logprobs[0].logprob, abs_tol=1e-5)
    completion = client.completions.create(model=REAL_MODEL, prompt="1, 2, 3,", max_tokens=3,
                                           temperature=0, logprobs=2)
    table = completion.choices[0].logprobs
    assert table is not None and "".join(table.tokens or []) == completion.choices[0].text
    assert all(len(top) == 2 for top in table.top_logprobs or [])


def test_n_choices_and_usage(client: openai.OpenAI) -> None:
    result = client.completions.create(model=REAL_MODEL, prompt="Once upon a time", n=3,
                                       max_tokens=8, temperature=1.0, seed=11)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert result.usage is not None and result.usage.completion_tokens == 24
    texts = {c.text for c in result.choices}
    assert len(texts) > 1, "different seeds per choice"
    chunks = list(client.chat.completions.create(model=REAL_MODEL, messages=ASK, n=2,
                                                 max_tokens=5, temperature=0, stream=True))
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}


def test_logit_bias_and_penalties_change_the_output(client: openai.OpenAI) -> None:
    def complete(**kwargs: object) -> str:
        return client.completions.create(model=REAL_MODEL, prompt="1, 2, 3, 4, 5,",
                                         max_tokens=12, temperature=0, **kwargs  # type: ignore[arg-type]
                                         ).choices[0].text
    plain = complete()
    assert plain.startswith(" 6, 7")
    six = client.completions.create(model=REAL_MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=2,
                                    temperature=0, logprobs=0).choices[0].logprobs
    six_id_text = (six.tokens or [])[1] if six else None
    assert six_id_text == "6"
    assert complete(frequency_penalty=2.0, presence_penalty=2.0) != plain


def test_get_one_model(client: openai.OpenAI) -> None:
    assert client.models.retrieve(REAL_MODEL).id == REAL_MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope:1")


@pytest.mark.parametrize(("extra", "pattern"), [
    ({"structured_outputs": {"regex": "[0-9]{3}-[a-c]{2}"}}, r"[0-9]{3}-[a-c]{2}"),
    ({"grammar": 'root ::= "yes" | "no"'}, r"yes|no"),
])
def test_regex_and_grammar_constrain_the_output(client: openai.OpenAI, extra: dict,
                                                pattern: str) -> None:
    """vLLM's ``structured_outputs.regex`` and llama-server's ``grammar`` on the real model: the
    contract's regex/grammar kinds, compiled by the llama.cpp backend."""
    for temperature, seed in ((0.0, None), (1.0, 3)):
        result = client.completions.create(model=REAL_MODEL, prompt="The code is", max_tokens=12,
                                           temperature=temperature, seed=seed, extra_body=extra)
        assert re.fullmatch(pattern, result.choices[0].text), result.choices[0].text


def test_unreadable_regex_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=REAL_MODEL, prompt="x", max_tokens=2,
                                  extra_body={"structured_outputs": {"regex": "(["}})
    assert caught.value.body["param"] == "structured_outputs"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tool_choice", ["required",
                                         {"type": "function", "function": {"name": "get_time"}}])
def test_a_whole_first_call_reaches_the_client_when_max_tokens_cuts(
        client: openai.OpenAI, stream: bool, tool_choice: object) -> None:
    """At temperature 0 the bundled model repeats a finished call until the limit: the calls
    that were whole before the cut still arrive, with finish_reason ``length``."""
    result = client.chat.completions.create(
        model=REAL_MODEL, messages=ASK, tools=[WEATHER_TOOL, TIME_TOOL],  # type: ignore[list-item]
        tool_choice=tool_choice, temperature=0, max_tokens=64, stream=stream)  # type: ignore[arg-type]
    if stream:
        chunks = list(result)  # type: ignore[arg-type]
        calls = [c for chunk in chunks if chunk.choices
                 for c in chunk.choices[0].delta.tool_calls or []]
        finish = next(c.choices[0].finish_reason for c in chunks
                      if c.choices and c.choices[0].finish_reason)
        names, arguments = [c.function.name for c in calls], [c.function.arguments
                                                                for c in calls]
    else:
        message = result.choices[0].message  # type: ignore[union-attr]
        finish = result.choices[0].finish_reason  # type: ignore[union-attr]
        names = [c.function.name for c in message.tool_calls or []]
        arguments = [c.function.arguments for c in message.tool_calls or []]
    assert names, "no call reached the client"
    assert finish in ("tool_calls", "length")
    assert len(set(zip(names, arguments, strict=True))) == len(names), "a call repeated"
    for name, args in zip(names, arguments, strict=True):
        tool = WEATHER_TOOL if name == "get_weather" else TIME_TOOL
        jsonschema.validate(json.loads(args), schema_of(tool))


def test_tool_schemas_with_refs_and_bounds_still_call(client: openai.OpenAI) -> None:
    """What MCP servers send (pydantic ``$defs``/``$ref``, ``minimum``, ``format``): the
    grammar keeps what it can enforce and the call still comes, arguments well-formed."""
    tool = {"type": "function", "function": {"name": "add_point", "parameters": {
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "integer"},
                                                              "y": {"type": "integer"}},
                            "required": ["x", "y"]}},
        "type": "object", "properties": {
            "point": {"$ref": "#/$defs/Point"},
            "page": {"type": "integer", "minimum": 1, "maximum": 100},
            "url": {"type": "string", "format": "uri"}},
        "required": ["point"]}}}
    result = client.chat.completions.create(
        model=REAL_MODEL, messages=ASK, tools=[tool], tool_choice="required",  # type: ignore[list-item]
        parallel_tool_calls=False, temperature=0, max_tokens=120)
    choice = result.choices[0]
    if choice.finish_reason == "tool_calls":
        arguments = json.loads((choice.message.tool_calls or [])[0].function.arguments)
        assert isinstance(arguments["point"]["x"], int)
    else:  # the base model writes huge numbers and a long URL: cut, but shaped by the $ref
        assert choice.finish_reason == "length"
        assert re.match(r'\{"tool_calls": \[\{"name": "add_point", "arguments": \{"point": '
                        r'\{"x": -?\d+, "y": -?\d+\}', choice.message.content or "")

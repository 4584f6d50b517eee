"""Anthropic's Messages API on a real ``deskai serve`` with the bundled Gemma 3 270M (a base
model: it answers through deskai's fallback transcript), driven by the official client.

Slow (a real model); greedy decoding, so the answers are the same every run.
"""

from __future__ import annotations

from typing import Any

import anthropic
import jsonschema
import pytest
from conftest import REAL_MODEL, ServerProcess

GREEDY = {"temperature": 0}  # newer anthropic clients send sampling fields as extra fields
WEATHER: Any = {"name": "get_weather", "description": "Get the current weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}


@pytest.fixture
def client(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def texts(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_a_message_whole_and_streamed(client: anthropic.Anthropic) -> None:
    request: Any = {"model": REAL_MODEL, "max_tokens": 32, "system": "You are a helpful assistant.",
                    "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    whole = client.messages.create(**request, extra_body=GREEDY)
    assert "Paris" in texts(whole)
    assert whole.stop_reason == "end_turn" and whole.stop_sequence is None
    counted = client.messages.count_tokens(**{k: v for k, v in request.items()
                                              if k != "max_tokens"})
    assert whole.usage.input_tokens == counted.input_tokens > 10
    assert 0 < whole.usage.output_tokens <= 32
    with client.messages.stream(**request, extra_body=GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == texts(final) == texts(whole)
    assert (final.stop_reason, final.usage.output_tokens) == ("end_turn",
                                                              whole.usage.output_tokens)


def test_a_stop_sequence_is_named(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=REAL_MODEL, max_tokens=24, stop_sequences=["5"],
                                     messages=[{"role": "user", "content": "Count: 1, 2, 3,"}],
                                     extra_body=GREEDY)
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "5"
    assert "5" not in texts(message) and "4" in texts(message)


def test_a_tool_round_trip(client: anthropic.Anthropic) -> None:
    """``any`` forces a call whose input follows the schema; its result gets an answer."""
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.messages.create(model=REAL_MODEL, max_tokens=64, messages=messages,
                                    tools=[WEATHER], tool_choice={"type": "any"},
                                    extra_body=GREEDY)
    uses = [block for block in called.content if isinstance(block, anthropic.types.ToolUseBlock)]
    assert uses and [block.type for block in called.content] == ["tool_use"] * len(uses)
    # a small model may repeat its call until max_tokens: the whole calls still come back
    assert called.stop_reason in {"tool_use", "max_tokens"}
    call = uses[0]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER["input_schema"])

    messages += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id,
                                           "name": call.name, "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": "Sunny, 22 degrees Celsius"}]}]
    answer = client.messages.create(model=REAL_MODEL, max_tokens=64, messages=messages,
                                    tools=[WEATHER], extra_body=GREEDY)
    assert answer.content and answer.stop_reason in {"end_turn", "max_tokens", "tool_use"}
    counted = client.messages.count_tokens(model=REAL_MODEL, messages=messages,
                                           tools=[WEATHER])
    assert answer.usage.input_tokens == counted.input_tokens > called.usage.input_tokens

"""The tool-call format on its own: parsing both output styles, and tool_choice rules."""

from __future__ import annotations

import json

import pytest

from deskai.errors import InvalidInputError
from deskai.frontend.tools import parse_tool_calls, plan_tools

TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}


def test_generic_and_hermes_outputs_parse_to_the_same_calls() -> None:
    generic = parse_tool_calls(
        ' {"tool_calls": [{"name": "get_time", "arguments": {"tz": "UTC"}}]}')
    hermes = parse_tool_calls('<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n'
                              "</tool_call>")
    for calls in (generic, hermes):
        assert calls is not None and [c.name for c in calls] == ["get_time"]
        assert json.loads(calls[0].arguments) == {"tz": "UTC"}
    assert generic[0].id != hermes[0].id  # type: ignore[index]


@pytest.mark.parametrize("text", ["Paris is sunny.", '{"tool_calls": [',
                                  "<tool_call>{oops}</tool_call>", '{"answer": 42}'])
def test_text_that_is_not_a_whole_call_stays_text(text: str) -> None:
    assert parse_tool_calls(text) is None


def test_tool_choice_rules() -> None:
    assert plan_tools([TOOL], "none", True) is None
    assert plan_tools(None, None, True) is None
    auto = plan_tools([TOOL], None, True)
    assert auto is not None and not auto.calls_only and auto.structured.or_text
    named = plan_tools([TOOL], {"type": "function", "function": {"name": "get_time"}}, False)
    assert named is not None and named.calls_only and named.mode == "named"
    for tools, choice in (([TOOL], {"function": {"name": "nope"}}), (None, "required"),
                          ([TOOL], "sometimes"), ([TOOL, TOOL], "auto")):
        with pytest.raises(InvalidInputError):
            plan_tools(tools, choice, True)

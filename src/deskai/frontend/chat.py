"""A chat request made ready for an engine: messages (+ tools, + an output format) → one prompt
and its constraint. The one copy every API, ``deskai run`` and agents use, so that the same
conversation and tools give the same prompt whichever way they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deskai.engine.sampling import StructuredOutput
from deskai.errors import InvalidInputError
from deskai.frontend.chat_template import ChatTemplate, RenderedPrompt
from deskai.frontend.schema import check_schema
from deskai.frontend.tools import (
    ToolPlan,
    messages_for_generic_format,
    plan_tools,
    with_tools_prompt,
)

JSON_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """The prompt to run, what tools may be called, and what constrains the output."""

    rendered: RenderedPrompt
    tools: ToolPlan | None
    structured: StructuredOutput | None  # the tool calls' schema, or the requested format


def json_output(schema: Any, *, field: str) -> StructuredOutput:
    """Output constrained to ``schema`` (a 400 naming ``field`` if no output could match it)."""
    check_schema(schema, field=field)
    return StructuredOutput(json_schema=schema, field=field)


def shape_chat(messages: list[dict[str, Any]], template: ChatTemplate, *,
               tools: list[dict[str, Any]] | None = None, tool_choice: Any = None,
               parallel_tool_calls: bool = True,
               structured: StructuredOutput | None = None) -> ChatPrompt:
    """Render ``messages`` (OpenAI's shape) for the model, with ``tools`` shown and constrained.

    A template that renders ``tools`` itself gets them; otherwise deskai's generic format is
    described in the system message (``tools.with_tools_prompt``).
    """
    plan = plan_tools(tools, tool_choice, parallel_tool_calls)
    if plan is None:  # earlier calls and results still show, in the format the model knows
        shown = messages if template.supports_tools else messages_for_generic_format(messages)
        return ChatPrompt(template.render(shown), None, structured)
    if structured is not None:
        raise InvalidInputError(f"{structured.field} cannot be combined with tools; a tool "
                                "call already has its own JSON shape", param=structured.field)
    if template.supports_tools:
        rendered = template.render(messages, tools=tools)
    else:
        rendered = template.render(with_tools_prompt(messages_for_generic_format(messages), plan))
    return ChatPrompt(rendered, plan, plan.structured)

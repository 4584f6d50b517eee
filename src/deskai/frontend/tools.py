"""Tool calling: how tools are shown to a model, how its calls are constrained and parsed.

deskai's generic format, used when the model's chat template cannot render tools itself (and
always for the output, which structured output constrains)::

    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}

The constraint is a JSON schema built from the tools' own, so ``arguments`` always parses and
validates; the backend compiles it. ``tool_choice`` decides its shape: ``required`` or a named
function allows only calls; ``auto`` allows either calls or plain text (text may not start with
``{``); ``none`` adds no constraint and no tools.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from deskai.engine.sampling import StructuredOutput
from deskai.errors import InvalidInputError
from deskai.frontend.chat_template import text_of
from deskai.frontend.schema import check_schema

TOOLS_SYSTEM_PROMPT = (
    "You can call these functions. To call one or more, reply with only a JSON object of the "
    'form {{"tool_calls": [{{"name": <function name>, "arguments": <arguments object>}}]}}. '
    "Otherwise reply normally.\n\nFunctions:\n{functions}"
)
_HERMES_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function a model may call: its name, what it does, a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def function(self, name: str | None = None) -> dict[str, Any]:
        """The tool in OpenAI's function-tool shape (under ``name`` when it is exposed under
        another one)."""
        return {"type": "function", "function": {"name": name or self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """What a request's tools and tool_choice mean for generation."""

    tools: list[Tool]
    mode: str  # "auto", "required" or "named"
    parallel: bool
    structured: StructuredOutput  # the calls' schema (or plain text, in "auto")

    @property
    def calls_only(self) -> bool:
        return self.mode != "auto"


def output_mode(start: str, tools: ToolPlan | None, *, finished: bool) -> str | None:
    """Whether output that begins with ``start`` is plain text or tool calls; ``None`` while
    it cannot tell yet. A call opens with ``{`` and plain text may not (the constraint sees to
    it), so the first character that is not a space decides — until then a stream holds back."""
    if tools is None:
        return "text"
    stripped = start.lstrip()
    if not stripped and not finished:
        return None
    return "calls" if tools.calls_only or stripped.startswith("{") else "text"


def parse_tools(raw_tools: list[dict[str, Any]]) -> list[Tool]:
    tools = []
    for index, raw in enumerate(raw_tools):
        function = raw.get("function") if raw.get("type", "function") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                or not function["name"]:
            raise InvalidInputError(f"tools[{index}] must be a function with a name (a string)",
                                    param="tools")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        check_schema(parameters, field="tools")
        description = function.get("description", "")
        tools.append(Tool(function["name"], description if isinstance(description, str)
                          else str(description), parameters))
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise InvalidInputError("tool names must be unique", param="tools")
    return tools


def plan_tools(raw_tools: list[dict[str, Any]] | None, tool_choice: Any,
               parallel: bool) -> ToolPlan | None:
    """Turn ``tools``/``tool_choice`` into a constraint; ``None`` when no tool may be called."""
    if not raw_tools or tool_choice == "none":
        if isinstance(tool_choice, dict) or tool_choice == "required":
            raise InvalidInputError("tool_choice asks for a tool but no tools were given",
                                    param="tool_choice")
        return None
    tools = parse_tools(raw_tools)
    mode, allowed = _choice(tool_choice, tools)
    structured = StructuredOutput(json_schema=calls_schema(allowed, parallel=parallel),
                                  or_text=mode == "auto", lenient=True, field="tools")
    return ToolPlan(tools, mode, parallel, structured)


def _choice(tool_choice: Any, tools: list[Tool]) -> tuple[str, list[Tool]]:
    if tool_choice in (None, "auto"):
        return "auto", tools
    if tool_choice == "required":
        return "required", tools
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        chosen = [tool for tool in tools if tool.name == name]
        if not chosen:
            raise InvalidInputError(f"tool_choice names {name!r}, which is not in tools",
                                    param="tool_choice")
        return "named", chosen
    raise InvalidInputError("tool_choice must be 'none', 'auto', 'required' or "
                            '{"type": "function", "function": {"name": ...}}',
                            param="tool_choice")


# Parallel calls per turn. Small models sampled at a high temperature otherwise repeat the same
# calls until max_tokens, and a cut-off list is no call at all.
MAX_PARALLEL_CALLS = 8


def calls_schema(tools: list[Tool], *, parallel: bool) -> dict[str, Any]:
    """JSON schema of the generic tool-call object, one branch per allowed tool.

    Each tool's own ``$defs`` move to the top (renamed ``<tool>__<name>``), since ``#/$defs/..``
    references resolve from the root and the tool's schema is nested here."""
    definitions: dict[str, Any] = {}
    call_branches = []
    for tool in tools:
        arguments, lifted = _lift_definitions(tool.parameters, f"{tool.name}__")
        definitions.update(lifted)
        call_branches.append({
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": arguments},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    calls: dict[str, Any] = {"type": "array", "minItems": 1,
                             "maxItems": MAX_PARALLEL_CALLS if parallel else 1,
                             "items": call_branches[0] if len(call_branches) == 1
                             else {"anyOf": call_branches}}
    schema: dict[str, Any] = {"type": "object", "properties": {"tool_calls": calls},
                              "required": ["tool_calls"], "additionalProperties": False}
    return {**schema, "$defs": definitions} if definitions else schema


_DEFINITIONS = ("$defs", "definitions")


def _lift_definitions(schema: dict[str, Any], prefix: str) -> tuple[dict[str, Any],
                                                                     dict[str, Any]]:
    """``schema`` without its top-level definitions (references renamed), and those."""
    lifted = {f"{prefix}{name}": value for key in _DEFINITIONS
              for name, value in (schema.get(key) or {}).items()}
    if not lifted:
        return schema, {}
    renamed = {f"#/{key}/{name[len(prefix):]}": f"#/$defs/{name}"
               for key in _DEFINITIONS for name in lifted}
    stripped = {k: v for k, v in schema.items() if k not in _DEFINITIONS}
    rewritten = _rewrite_refs({"root": stripped, "defs": lifted}, renamed)
    return rewritten["root"], rewritten["defs"]


def _rewrite_refs(value: Any, renamed: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: (renamed.get(item, item) if key == "$ref" and isinstance(item, str)
                      else _rewrite_refs(item, renamed)) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewrite_refs(item, renamed) for item in value]
    return value


def tools_system_prompt(tools: list[Tool]) -> str:
    functions = "\n".join(json.dumps({"name": t.name, "description": t.description,
                                      "parameters": t.parameters}) for t in tools)
    return TOOLS_SYSTEM_PROMPT.format(functions=functions)


def parse_tool_calls(text: str, *, cut_short: bool = False) -> list[ToolCall] | None:
    """Tool calls in ``text`` (generic JSON or Hermes ``<tool_call>`` tags), else ``None``.

    ``cut_short``: the output ended at ``max_tokens``; the whole calls before the cut are kept
    (a small model at temperature 0 may repeat a finished call until the limit, and the first
    call must still reach the client). A call repeated word for word is one call.
    """
    stripped = text.strip()
    raw_calls: list[Any] = []
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except json.JSONDecodeError:
            if not cut_short:
                return None
            raw_calls = _whole_calls_before_the_cut(stripped)
        else:
            raw_calls = document.get("tool_calls", []) if isinstance(document, dict) else []
    else:
        for match in _HERMES_CALL.finditer(text):
            try:
                raw_calls.append(json.loads(match.group(1)))
            except json.JSONDecodeError:
                return None
    unique: dict[str, dict[str, Any]] = {}
    for call in raw_calls:
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            unique.setdefault(json.dumps(call, sort_keys=True), call)
    calls = [ToolCall(new_call_id(), c["name"], json.dumps(c.get("arguments", {})))
             for c in unique.values()]
    return calls or None


def _whole_calls_before_the_cut(text: str) -> list[Any]:
    """The complete objects of a ``{"tool_calls": [ ...`` document that was cut off."""
    opening = re.match(r'\{\s*"tool_calls"\s*:\s*\[\s*', text)
    if opening is None:
        return []
    decoder, position = json.JSONDecoder(), opening.end()
    calls: list[Any] = []
    while True:
        try:
            call, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return calls
        calls.append(call)
        separator = re.compile(r"\s*,\s*").match(text, position)
        if separator is None:
            return calls
        position = separator.end()


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def messages_for_generic_format(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant tool calls and tool results as plain text, for templates without tools."""
    converted = []
    for message in messages:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            calls = [{"name": call["function"]["name"],
                      "arguments": _arguments_object(call["function"].get("arguments"))}
                     for call in message["tool_calls"]]
            converted.append({"role": "assistant",
                              "content": json.dumps({"tool_calls": calls})})
        elif message.get("role") == "tool":
            converted.append({"role": "tool", "content": text_of(message.get("content"))})
        else:
            converted.append(message)
    return converted


def _arguments_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def with_tools_prompt(messages: list[dict[str, Any]], tools: ToolPlan) -> list[dict[str, Any]]:
    """The tools described in the system message: merged into the conversation's own system
    message when it has one (a second one confuses templates that expect one), else first."""
    prompt = tools_system_prompt(tools.tools)
    if messages and messages[0].get("role") in {"system", "developer"}:
        first = messages[0]
        return [{**first, "content": f"{text_of(first.get('content'))}\n\n{prompt}"},
                *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]

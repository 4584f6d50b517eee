"""Pure converters between the Responses API's items and deskai's native path.

Input items (``message``, ``function_call``, ``function_call_output``) become the OpenAI-shaped
chat messages that ``frontend.chat.shape_chat`` renders — the same prompt the other APIs build;
a finished generation becomes output items (a ``message`` with ``output_text``, or
``function_call``s) and the response object the official client parses.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from deskai.engine.sampling import StructuredOutput
from deskai.errors import InvalidInputError
from deskai.frontend.chat import JSON_OBJECT_SCHEMA, json_output
from deskai.frontend.chat_template import text_of
from deskai.frontend.tools import ToolCall, ToolPlan, parse_tool_calls
from deskai.server.responses.models import ResponseRequest, TextConfig

Item = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# -- requests ---------------------------------------------------------------------------------

def input_items(body: ResponseRequest) -> list[Item]:
    """The request's input as stored items, each with an id and message text as parts (a
    string input is one user message), so ``input_items`` lists them as OpenAI does."""
    raw = [{"type": "message", "role": "user", "content": body.input}] \
        if isinstance(body.input, str) else body.input
    items = []
    for index, item in enumerate(raw):
        kind = item.get("type", "message")
        if kind not in _ID_PREFIX:
            raise InvalidInputError(f"input[{index}] has type {kind!r}; deskai takes message, "
                                    "function_call and function_call_output items",
                                    param=f"input[{index}]")
        stored = {**item, "type": kind, "id": item.get("id") or new_id(_ID_PREFIX[kind]),
                  "status": item.get("status", "completed")}
        if kind == "message":
            role = _role(item, index)
            text = _content(item, index)
            stored.update(role=role, content=[text_part(text) if role == "assistant"
                                              else {"type": "input_text", "text": text}])
        items.append(stored)
    return items


_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def chat_messages(instructions: str | None, items: list[Item]) -> list[dict[str, Any]]:
    """Items (a conversation so far) → OpenAI chat messages; consecutive function calls become
    one assistant message with several ``tool_calls``."""
    messages: list[dict[str, Any]] = ([{"role": "system", "content": instructions}]
                                      if instructions else [])
    for index, item in enumerate(items):
        if item["type"] == "message":
            messages.append({"role": _role(item, index), "content": _content(item, index)})
        elif item["type"] == "function_call":
            call = {"id": item.get("call_id") or item["id"], "type": "function", "function": {
                "name": str(item.get("name", "")), "arguments": _arguments(item, index)}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item["type"] == "mcp_call":  # a server-side call: the call and its result
            call_id = str(item["id"])
            messages.append({"role": "assistant", "content": None, "tool_calls": [{
                "id": call_id, "type": "function", "function": {
                    "name": str(item.get("name", "")), "arguments": _arguments(item, index)}}]})
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": item.get("output") or f"error: {item.get('error')}"})
        elif item["type"] == "function_call_output":
            output = item.get("output", "")
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                             "content": output if isinstance(output, str)
                             else _content({"content": output}, index)})
    return messages  # mcp_list_tools items say nothing the model needs again


def _role(item: Item, index: int) -> str:
    role = item.get("role", "user")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidInputError(f"input[{index}].role must be user, assistant, system or "
                                "developer", param=f"input[{index}].role")
    return str(role)


def _content(item: Item, index: int) -> str:
    content = item.get("content", "")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidInputError(f"input[{index}].content must be text or a list of parts",
                                param=f"input[{index}].content")
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in (
                "input_text", "output_text", "text"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidInputError(f"input[{index}] has a {kind!r} part; deskai's models "
                                    "take text only", param=f"input[{index}].content")
    return text_of(content)


def _arguments(item: Item, index: int) -> str:
    arguments = item.get("arguments", "{}")
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses' flat function tools → chat's nested ones (the frontend's input)."""
    if not tools:
        return None
    nested = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise InvalidInputError(f"tools[{index}] has type {tool.get('type')!r}; deskai "
                                    "runs function tools", param="tools")
        nested.append({"type": "function", "function": {
            key: tool[key] for key in ("name", "description", "parameters") if key in tool}})
    return nested


def chat_tool_choice(choice: str | dict[str, Any] | None) -> Any:
    if isinstance(choice, dict):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise InvalidInputError('tool_choice must be "none", "auto", "required" or '
                                    '{"type": "function", "name": ...}', param="tool_choice")
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def format_constraint(text: TextConfig | None) -> StructuredOutput | None:
    if text is None or text.format.type == "text":
        return None
    if text.format.type == "json_object":
        return json_output(JSON_OBJECT_SCHEMA, field="text.format")
    return json_output(text.format.schema_, field="text.format")


# -- responses --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Outcome:
    """A generation's end, as the Responses API reports it."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


def tool_calls_of(outcome: Outcome, tools: ToolPlan | None) -> list[ToolCall] | None:
    if tools is None or outcome.finish_reason not in ("stop", "length"):
        return None
    return parse_tool_calls(outcome.text, cut_short=outcome.finish_reason == "length")


def output_items(outcome: Outcome, tools: ToolPlan | None, *, message_id: str) -> list[Item]:
    calls = tool_calls_of(outcome, tools)
    if calls:
        return [function_call_item(call) for call in calls]
    return [message_item(message_id, outcome.text)]


def message_item(item_id: str, text: str, status: str = "completed") -> Item:
    content = [text_part(text)] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": content}


def text_part(text: str) -> Item:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(call: ToolCall, arguments: str | None = None,
                       status: str = "completed") -> Item:
    return {"type": "function_call", "id": new_id("fc"), "call_id": call.id, "name": call.name,
            "arguments": call.arguments if arguments is None else arguments, "status": status}


def response_object(body: ResponseRequest, response_id: str, created_at: int, *,
                    status: str = "in_progress", output: list[Item] | None = None,
                    outcome: Outcome | None = None) -> Item:
    """The response as the official client parses it; ``outcome`` once generation ended."""
    incomplete = outcome is not None and outcome.finish_reason == "length"
    if outcome is not None:
        status = "incomplete" if incomplete else "completed"
    return {
        "id": response_id, "object": "response", "created_at": created_at,
        "completed_at": int(time.time()) if outcome is not None else None,
        "status": status, "model": body.model, "output": output or [], "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
        "parallel_tool_calls": body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "temperature": body.temperature, "top_p": body.top_p,
        "tool_choice": body.tool_choice or "auto", "tools": body.tools or [],
        "text": {"format": (body.text.format.model_dump(by_alias=True, exclude_none=True)
                            if body.text else {"type": "text"})},
        "reasoning": {"effort": None, "summary": None}, "store": body.store,
        "metadata": body.metadata or {}, "truncation": "disabled", "user": body.user,
        "usage": usage(outcome) if outcome is not None else None,
    }


def usage(outcome: Outcome) -> Item:
    return {"input_tokens": outcome.prompt_tokens,
            "input_tokens_details": {"cached_tokens": outcome.cached_tokens,
                                     "cache_write_tokens": 0},
            "output_tokens": outcome.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}

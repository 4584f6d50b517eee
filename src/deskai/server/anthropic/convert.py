"""Anthropic's Messages request → the chat every API shares (OpenAI-shaped messages, tools and
tool_choice for ``frontend.chat.shape_chat``) and its ``SamplingParams``. Pure: no I/O.

The conversation becomes the same messages the OpenAI route would receive for it:

* ``system`` (a string or text blocks) → a first ``system`` message;
* text blocks → the message's text (blocks joined by a blank line);
* an assistant's ``tool_use`` blocks → its ``tool_calls`` (``input`` as JSON ``arguments``);
* a user's ``tool_result`` blocks → ``tool`` messages, where they come among its text;
* ``thinking`` blocks of earlier assistant turns are dropped (deskai never writes them, and
  Anthropic leaves earlier turns' thinking out of the prompt too).

Images and documents are refused with a 400: deskai serves text models.
"""

from __future__ import annotations

import json
from typing import Any

from deskai.engine.sampling import SamplingParams, StructuredOutput
from deskai.errors import InvalidInputError
from deskai.frontend.chat import ChatPrompt, json_output, shape_chat
from deskai.frontend.chat_template import ChatTemplate
from deskai.server.anthropic.models import (
    AnthropicConversation,
    AnthropicInputMessage,
    AnthropicMessagesRequest,
    AnthropicToolChoice,
)

# Anthropic applies no nucleus cut unless asked (as OpenAI's top_p of 1.0); the contract's
# other defaults (temperature 0.8, top_k 40, min_p 0.05) are deskai's for every API
ANTHROPIC_DEFAULT_TOP_P = 1.0
BLOCK_SEPARATOR = "\n\n"
_UNSUPPORTED_MEDIA = {"image", "document", "search_result", "container_upload"}
_DROPPED = {"thinking", "redacted_thinking"}


def shape(body: AnthropicConversation, template: ChatTemplate) -> ChatPrompt:
    """The prompt and constraint this request runs with: the one ``shape_chat`` builds."""
    tool_choice, parallel = openai_tool_choice(body.tool_choice)
    return shape_chat(openai_messages(body), template, tools=openai_tools(body),
                      tool_choice=tool_choice, parallel_tool_calls=parallel,
                      structured=output_format(body))


def output_format(body: AnthropicConversation) -> StructuredOutput | None:
    """``output_config.format``: the answer constrained to a JSON schema (a 400 naming the
    field for a schema deskai cannot enforce, never silently unconstrained)."""
    if body.output_config is None or body.output_config.format is None:
        return None
    return json_output(body.output_config.format.json_schema, field="output_config.format")


def sampling_params(body: AnthropicMessagesRequest, prompt: ChatPrompt) -> SamplingParams:
    """The caller's stop sequences come first: the engine checks them in order, and
    ``stream.matched_stop`` tells a caller's from the chat format's by that."""
    return SamplingParams.given(
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=ANTHROPIC_DEFAULT_TOP_P if body.top_p is None else body.top_p,
        top_k=body.top_k,
        stop=list(body.stop_sequences or []) + prompt.rendered.stop,
        structured=prompt.structured,
    )


def openai_messages(body: AnthropicConversation) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.system is not None:
        system = (body.system if isinstance(body.system, str)
                  else _joined_text(body.system, "system"))
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(body.messages):
        messages.extend(_converted(message, f"messages[{index}]"))
    if body.messages[-1].role == "assistant":
        raise InvalidInputError("the last message must be the user's: deskai does not continue "
                                "a prefilled assistant turn",
                                param=f"messages[{len(body.messages) - 1}]")
    return messages


def _converted(message: AnthropicInputMessage, where: str) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "assistant":
        return [_assistant(message.content, where)]
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    for index, block in enumerate(message.content):
        at = f"{where}.content[{index}]"
        kind = _block_type(block, at)
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_result":
            if texts:  # text before a result stays before it
                out.append({"role": "user", "content": BLOCK_SEPARATOR.join(texts)})
                texts = []
            out.append(_tool_message(block, at))
        else:
            _refuse(kind, at, "a user message holds text and tool_result blocks")
    if texts or not out:
        out.append({"role": "user", "content": BLOCK_SEPARATOR.join(texts)})
    return out


def _assistant(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        at = f"{where}.content[{index}]"
        kind = _block_type(block, at)
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind not in _DROPPED:
            _refuse(kind, at, "an assistant message holds text and tool_use blocks")
    message: dict[str, Any] = {"role": "assistant"}
    if texts or not calls:
        message["content"] = BLOCK_SEPARATOR.join(texts)
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id:
        raise InvalidInputError("a tool_use block needs an 'id' (a string)", param=f"{at}.id")
    if not isinstance(name, str) or not name:
        raise InvalidInputError("a tool_use block needs a 'name' (a string)", param=f"{at}.name")
    if not isinstance(arguments, dict):
        raise InvalidInputError("a tool_use block's 'input' must be an object",
                                param=f"{at}.input")
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def _tool_message(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidInputError("a tool_result block needs a 'tool_use_id' (a string)",
                                param=f"{at}.tool_use_id")
    content = block.get("content", "")
    if isinstance(content, list):
        content = _joined_text(content, f"{at}.content")
    elif not isinstance(content, str):
        raise InvalidInputError("a tool_result's content must be a string or text blocks",
                                param=f"{at}.content")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise InvalidInputError("'is_error' must be true or false", param=f"{at}.is_error")
    if is_error:  # the model should know the call failed; OpenAI's shape has no flag for it
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _joined_text(blocks: list[Any], where: str) -> str:
    texts = []
    for index, block in enumerate(blocks):
        at = f"{where}[{index}]"
        kind = _block_type(block, at)
        if kind != "text":
            _refuse(kind, at, "only text blocks are allowed here")
        texts.append(_text(block, at))
    return BLOCK_SEPARATOR.join(texts)


def _block_type(block: Any, at: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if not isinstance(kind, str):
        raise InvalidInputError("a content block must be an object with a 'type'", param=at)
    return kind


def _text(block: dict[str, Any], at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidInputError("a text block needs a 'text' string", param=f"{at}.text")
    return text


def _refuse(kind: str, at: str, allowed: str) -> None:
    if kind in _UNSUPPORTED_MEDIA:
        raise InvalidInputError(f"{kind} blocks are not supported: deskai serves text-only "
                                "models; send the content as text", param=at)
    raise InvalidInputError(f"unexpected {kind!r} block: {allowed}", param=at)


def openai_tools(body: AnthropicConversation) -> list[dict[str, Any]] | None:
    """Client tools as OpenAI functions; Anthropic's server tools (web search, code
    execution, …) are refused: nothing here could run them."""
    if body.tools is None:
        return None
    tools = []
    for index, tool in enumerate(body.tools):
        if tool.type not in (None, "custom"):
            raise InvalidInputError(f"tools[{index}] is Anthropic's server tool {tool.type!r}, "
                                    "which deskai cannot run; give client tools (name, "
                                    "description, input_schema)", param=f"tools[{index}]")
        if tool.input_schema is None:
            raise InvalidInputError(f"tools[{index}] needs an input_schema",
                                    param=f"tools[{index}].input_schema")
        function: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        function["parameters"] = tool.input_schema
        tools.append({"type": "function", "function": function})
    return tools


def openai_tool_choice(choice: AnthropicToolChoice | None) -> tuple[Any, bool]:
    """``tool_choice`` as OpenAI's (``any`` → ``required``, ``tool`` → the named function),
    and whether several calls may be made in one turn."""
    if choice is None:
        return None, True
    parallel = not choice.disable_parallel_tool_use
    if choice.type == "any":
        return "required", parallel
    if choice.type == "tool":
        if not choice.name:
            raise InvalidInputError("tool_choice of type 'tool' needs the tool's 'name'",
                                    param="tool_choice.name")
        return {"type": "function", "function": {"name": choice.name}}, parallel
    return choice.type, parallel  # "auto" or "none"

"""Pure converters between OpenAI's wire models and deskai's native generation path.

``from_*`` turn a request into a prompt and ``SamplingParams``; ``to_*`` turn native results
into OpenAI responses and stream chunks. No I/O here, so every rule is testable on its own.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from deskai.engine.chat_template import ChatTemplate, RenderedPrompt
from deskai.engine.grammar import JSON_OBJECT_SCHEMA, schema_to_grammar
from deskai.engine.sampling_params import SamplingParams
from deskai.engine.tool_calls import (
    ToolCall,
    ToolPlan,
    messages_for_generic_format,
    parse_tool_calls,
    plan_tools,
    tools_system_prompt,
)
from deskai.errors import InvalidInputError
from deskai.server.generation import Generation
from deskai.server.openai_logprobs import TokenBytes, to_chat_logprobs, to_completion_logprobs
from deskai.server.openai_models import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    FunctionCall,
    PromptTokensDetails,
    ResponseFormat,
    ToolCallOut,
    Usage,
    _SamplingFields,
)

DEFAULT_TEMPERATURE = 0.8  # llama.cpp's and Ollama's default
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def sampling_params(body: _SamplingFields, *, max_tokens: int | None,
                    extra_stop: list[str] | None = None, grammar: str | None = None,
                    logprobs: int | None = None) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stop_list + (extra_stop or []),
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.logit_bias_ids,
        grammar=grammar,
        logprobs=logprobs,
    )


def choice_params(params: SamplingParams, n: int) -> list[SamplingParams]:
    """One parameter set per choice; with a seed, choice i samples with seed + i."""
    if n == 1:
        return [params]
    return [replace(params, seed=None if params.seed is None else (params.seed + i) % 2**32)
            for i in range(n)]


def from_completion_request(body: CompletionRequest) -> tuple[str | list[int], SamplingParams]:
    prompt: str | list[int]
    if isinstance(body.prompt, list) and all(isinstance(p, str) for p in body.prompt):
        if len(body.prompt) != 1:
            raise InvalidInputError("one prompt per request is supported; send them separately",
                                    param="prompt")
        prompt = str(body.prompt[0])
    else:
        prompt = body.prompt  # a string, or token ids
    max_tokens = body.max_tokens or COMPLETION_DEFAULT_MAX_TOKENS
    return prompt, sampling_params(body, max_tokens=max_tokens, logprobs=body.logprobs)


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """A chat request made native: the prompt, how to sample, and what tools may be called."""

    rendered: RenderedPrompt
    params: SamplingParams
    tools: ToolPlan | None


def from_chat_request(body: ChatCompletionRequest, template: ChatTemplate) -> ChatPlan:
    messages = [message.model_dump(exclude_none=True) for message in body.messages]
    tools = plan_tools(body.tools, body.tool_choice, body.parallel_tool_calls)
    grammar = response_format_grammar(body.response_format)
    if tools is not None and grammar is not None:
        raise InvalidInputError("response_format cannot be combined with tools; tool calls "
                                "already have a fixed JSON shape", param="response_format")
    template_tools = None
    if tools is not None and template.supports_tools:
        template_tools = body.tools
    elif tools is not None:
        messages = _with_tools_prompt(messages_for_generic_format(messages), tools)
    rendered = template.render(messages, tools=template_tools)
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    params = sampling_params(body, max_tokens=body.token_limit, extra_stop=rendered.stop,
                             grammar=tools.grammar if tools else grammar, logprobs=logprobs)
    return ChatPlan(rendered, params, tools)


def response_format_grammar(response_format: ResponseFormat | None) -> str | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return schema_to_grammar(JSON_OBJECT_SCHEMA)
    spec = response_format.json_schema or {}
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidInputError("response_format.json_schema.schema must be a JSON schema",
                                param="response_format")
    return schema_to_grammar(schema)


def _with_tools_prompt(messages: list[dict[str, Any]], tools: ToolPlan) -> list[dict[str, Any]]:
    prompt = tools_system_prompt(tools.tools)
    if messages and messages[0].get("role") in {"system", "developer"}:
        first = messages[0]
        return [{**first, "content": f"{first.get('content') or ''}\n\n{prompt}"},
                *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


def usage_of(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens))


def total_usage(results: list[Generation]) -> Usage:
    """Usage over all choices: the prompt counted once, every choice's tokens added."""
    first = results[0]
    return usage_of(first.prompt_tokens, sum(r.completion_tokens for r in results),
                    first.cached_tokens)


def to_completion(results: list[Generation], model: str, *, token_bytes: TokenBytes,
                  logprobs: int | None = None) -> Completion:
    choices = [CompletionChoice(
        index=index, text=result.text, finish_reason=result.finish_reason,
        logprobs=None if logprobs is None else to_completion_logprobs(
            result.logprobs, token_bytes, with_top=logprobs > 0))
        for index, result in enumerate(results)]
    return Completion(id=new_id("cmpl"), created=now(), model=model, choices=choices,
                      usage=total_usage(results))


def to_chat_completion(results: list[Generation], model: str, *, plan: ChatPlan,
                       token_bytes: TokenBytes) -> ChatCompletion:
    choices = []
    for index, result in enumerate(results):
        message, finish = to_assistant_message(result.text, result.finish_reason, plan.tools)
        choices.append(ChatChoice(
            index=index, message=message, finish_reason=finish,
            logprobs=to_chat_logprobs(result.logprobs, token_bytes)
            if plan.params.logprobs is not None else None))
    return ChatCompletion(id=new_id("chatcmpl"), created=now(), model=model, choices=choices,
                          usage=total_usage(results))


def to_assistant_message(text: str, finish_reason: str,
                         tools: ToolPlan | None) -> tuple[AssistantMessage, str]:
    """The assistant's reply: tool calls when the output is one, else its text."""
    calls = parse_tool_calls(text) if tools is not None and finish_reason == "stop" else None
    if calls is None:
        return AssistantMessage(content=text), finish_reason
    return AssistantMessage(content=None, tool_calls=[to_tool_call(c) for c in calls]), \
        "tool_calls"


def to_tool_call(call: ToolCall) -> ToolCallOut:
    return ToolCallOut(id=call.id, function=FunctionCall(name=call.name,
                                                         arguments=call.arguments))


def sse(data: dict[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"

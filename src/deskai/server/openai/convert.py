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

from deskai.engine.sampling import SamplingParams, StructuredOutput
from deskai.errors import InvalidInputError
from deskai.frontend.chat import JSON_OBJECT_SCHEMA, ChatPrompt, json_output, shape_chat
from deskai.frontend.chat_template import ChatTemplate
from deskai.frontend.tools import ToolCall, ToolPlan, parse_tool_calls
from deskai.server.generation import Generation
from deskai.server.openai.logprobs import TokenBytes, to_chat_logprobs, to_completion_logprobs
from deskai.server.openai.models import (
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

OPENAI_DEFAULT_TOP_P = 1.0  # OpenAI's documented default (the contract's is llama.cpp's 0.95)
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def sampling_params(body: _SamplingFields, *, max_tokens: int | None,
                    extra_stop: list[str] | None = None,
                    structured: StructuredOutput | None = None,
                    logprobs: int | None = None) -> SamplingParams:
    """The request's sampling; what it leaves unset keeps the contract's defaults."""
    return SamplingParams.given(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=OPENAI_DEFAULT_TOP_P if body.top_p is None else body.top_p,
        top_k=body.top_k,
        min_p=body.min_p,
        repeat_penalty=body.repeat_penalty,
        seed=body.seed,
        stop=body.stop_list + (extra_stop or []),
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.logit_bias_ids,
        structured=structured,
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
    return prompt, sampling_params(body, max_tokens=max_tokens, logprobs=body.logprobs,
                                   structured=extension_constraint(body))


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """A chat request made native: the prompt, how to sample, and what tools may be called."""

    prompt: ChatPrompt
    params: SamplingParams

    @property
    def tools(self) -> ToolPlan | None:
        return self.prompt.tools


def from_chat_request(body: ChatCompletionRequest, template: ChatTemplate) -> ChatPlan:
    messages = [message.model_dump(exclude_none=True) for message in body.messages]
    structured = response_format_constraint(body.response_format) or extension_constraint(body)
    prompt = shape_chat(messages, template, tools=body.tools, tool_choice=body.tool_choice,
                        parallel_tool_calls=body.parallel_tool_calls, structured=structured)
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    params = sampling_params(body, max_tokens=body.token_limit, extra_stop=prompt.rendered.stop,
                             structured=prompt.structured, logprobs=logprobs)
    return ChatPlan(prompt, params)


def response_format_constraint(response_format: ResponseFormat | None
                               ) -> StructuredOutput | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return json_output(JSON_OBJECT_SCHEMA, field="response_format")
    spec = response_format.json_schema or {}
    return json_output(spec.get("schema"), field="response_format")


def extension_constraint(body: _SamplingFields) -> StructuredOutput | None:
    """llama-server's ``grammar`` or vLLM's ``structured_outputs``, when given."""
    if body.grammar is not None:
        return StructuredOutput(grammar=body.grammar, field="grammar")
    wanted = body.structured_outputs
    if wanted is None:
        return None
    if wanted.json_ is not None:
        return json_output(wanted.json_, field="structured_outputs")
    return StructuredOutput(regex=wanted.regex, grammar=wanted.grammar,
                            field="structured_outputs")


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
    """The assistant's reply: tool calls when the output is one, else its text.

    Cut off by ``max_tokens``, the calls that were whole before the cut are still returned,
    with ``finish_reason: length`` (never ``tool_calls``: the answer did not end)."""
    calls = None
    if tools is not None and finish_reason in ("stop", "length"):
        calls = parse_tool_calls(text, cut_short=finish_reason == "length")
    if calls is None:
        return AssistantMessage(content=text), finish_reason
    return AssistantMessage(content=None, tool_calls=[to_tool_call(c) for c in calls]), \
        "tool_calls" if finish_reason == "stop" else finish_reason


def to_tool_call(call: ToolCall) -> ToolCallOut:
    return ToolCallOut(id=call.id, function=FunctionCall(name=call.name,
                                                         arguments=call.arguments))


def sse(data: dict[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"

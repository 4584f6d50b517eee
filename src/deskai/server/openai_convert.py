"""Pure converters between OpenAI's wire models and deskai's native generation path.

``from_*`` turn a request into a prompt and ``SamplingParams``; ``to_*`` turn native results
into OpenAI responses and stream chunks. No I/O here, so every rule is testable on its own.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from deskai.engine.chat_template import ChatTemplate, RenderedPrompt
from deskai.engine.request import Delta
from deskai.engine.sampling_params import SamplingParams
from deskai.errors import InvalidInputError
from deskai.server.generation import Generation
from deskai.server.openai_models import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    PromptTokensDetails,
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
                    extra_stop: list[str] | None = None) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stop_list + (extra_stop or []),
    )


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
    return prompt, sampling_params(body, max_tokens=max_tokens)


def from_chat_request(body: ChatCompletionRequest,
                      template: ChatTemplate) -> tuple[RenderedPrompt, SamplingParams]:
    messages = [message.model_dump(exclude_none=True) for message in body.messages]
    rendered = template.render(messages)
    params = sampling_params(body, max_tokens=body.token_limit, extra_stop=rendered.stop)
    return rendered, params


def usage_of(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens))


def to_completion(result: Generation, model: str) -> Completion:
    return Completion(
        id=new_id("cmpl"), created=now(), model=model,
        choices=[CompletionChoice(text=result.text, finish_reason=result.finish_reason)],
        usage=usage_of(result.prompt_tokens, result.completion_tokens, result.cached_tokens))


def to_chat_completion(result: Generation, model: str) -> ChatCompletion:
    return ChatCompletion(
        id=new_id("chatcmpl"), created=now(), model=model,
        choices=[ChatChoice(message=AssistantMessage(content=result.text),
                            finish_reason=result.finish_reason)],
        usage=usage_of(result.prompt_tokens, result.completion_tokens, result.cached_tokens))


def to_completion_chunk(delta: Delta, *, chunk_id: str, created: int,
                        model: str) -> dict[str, Any]:
    finish = delta.finish_reason.value if delta.finish_reason else None
    return Completion(id=chunk_id, created=created, model=model,
                      choices=[CompletionChoice(text=delta.text, finish_reason=finish)]
                      ).model_dump(exclude_none=True)


def to_chat_chunk(delta: Delta | None, *, chunk_id: str, created: int,
                  model: str) -> dict[str, Any]:
    """A chat stream chunk; ``None`` makes the opening chunk that carries the role."""
    if delta is None:
        choice = ChatChunkChoice(delta=ChatDelta(role="assistant", content=""))
    else:
        finish = delta.finish_reason.value if delta.finish_reason else None
        content = delta.text if delta.text or finish is None else None
        choice = ChatChunkChoice(delta=ChatDelta(content=content), finish_reason=finish)
    chunk = ChatCompletionChunk(id=chunk_id, created=created, model=model, choices=[choice])
    data = chunk.model_dump(exclude_none=True)
    data["choices"][0]["finish_reason"] = choice.finish_reason
    return data


def to_usage_chunk(delta: Delta, *, chunk_id: str, created: int, model: str,
                   chat: bool) -> dict[str, Any]:
    """The final chunk ``stream_options.include_usage`` asks for: no choices, just usage."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {"id": chunk_id, "object": kind, "created": created, "model": model, "choices": [],
            "usage": usage_of(delta.prompt_tokens, delta.completion_tokens,
                              delta.cached_tokens).model_dump()}


def sse(data: dict[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"

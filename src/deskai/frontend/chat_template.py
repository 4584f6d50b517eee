"""Chat messages → one prompt string, through the model's own Jinja chat template.

GGUF files carry the template their model was trained with (``tokenizer.chat_template``); it is
rendered in a sandboxed Jinja environment with the variables Hugging Face's ``transformers``
passes (``messages``, ``add_generation_prompt``, ``bos_token``, ``eos_token``, ``tools``).

A model without a template (a base model such as the bundled Gemma 3 270M) gets the documented
fallback, a plain transcript that base models continue naturally::

    {system}

    User: {user}
    Assistant: {assistant}
    User: {user}
    Assistant:

with ``"\\nUser:"`` added as a stop string so the model does not write the user's next turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from deskai.engine.types import ModelFacts
from deskai.errors import InvalidInputError

FALLBACK_STOP = "\nUser:"
# a base model continuing a transcript with tools writes the results it expects next: the
# caller's tool writes those
FALLBACK_TOOL_STOP = "\nTool result:"
_ROLE_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool"}


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A prompt ready to tokenize, with stop strings the format needs."""

    text: str
    stop: list[str] = field(default_factory=list)
    add_special: bool = True  # False when the template already wrote the BOS token


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """The chat format of one model: its Jinja template, or the fallback when it has none."""

    source: str | None
    bos_token: str = ""
    eos_token: str = ""

    @property
    def is_fallback(self) -> bool:
        return not self.source

    @property
    def supports_tools(self) -> bool:
        """Whether the template renders a ``tools`` list itself."""
        return bool(self.source) and "tools" in (self.source or "")

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> RenderedPrompt:
        if not messages:
            raise InvalidInputError("messages must not be empty", param="messages")
        messages = [{**m, "content": text_of(m.get("content"))} for m in messages]
        if self.source is None:
            return RenderedPrompt(render_fallback(messages, add_generation_prompt),
                                  stop=[FALLBACK_STOP, FALLBACK_TOOL_STOP])
        text = self._render_jinja(messages, add_generation_prompt, tools)
        starts_with_bos = bool(self.bos_token) and text.startswith(self.bos_token)
        return RenderedPrompt(text, add_special=not starts_with_bos)

    def _render_jinja(self, messages: list[dict[str, Any]], add_generation_prompt: bool,
                      tools: list[dict[str, Any]] | None) -> str:
        try:
            template = _environment().from_string(self.source or "")
            return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                   bos_token=self.bos_token, eos_token=self.eos_token,
                                   tools=tools)
        except TemplateError as exc:
            raise InvalidInputError(f"the model's chat template rejected these messages: {exc}",
                                    param="messages") from None


class TemplatedModel(Protocol):
    """A loaded model as far as its chat format goes (``runtime.LoadedModel`` is one)."""

    @property
    def chat_template(self) -> str | None: ...

    @property
    def facts(self) -> ModelFacts: ...


def template_of(model: TemplatedModel) -> ChatTemplate:
    return ChatTemplate(model.chat_template, bos_token=model.facts.bos_text,
                        eos_token=model.facts.eos_text)


def render_fallback(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    parts: list[str] = []
    for message in messages:
        role, content = message.get("role", "user"), text_of(message.get("content"))
        if role in {"system", "developer"}:
            parts.append(f"{content}\n\n")
        elif role == "tool":
            parts.append(f"Tool result: {content}\n")
        else:
            parts.append(f"{_ROLE_LABELS.get(role, role.title())}: {content}\n")
    if add_generation_prompt:
        parts.append("Assistant:")
    return "".join(parts)


def text_of(content: Any) -> str:
    """OpenAI content is a string or a list of parts; only text parts are supported here."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent,
                                                                  ensure_ascii=False)
    return env

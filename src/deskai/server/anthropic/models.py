"""Anthropic's Messages API on the wire: the request bodies deskai accepts.

The envelope (model, max_tokens, sampling, tools, tool_choice) is validated here, with the
sampling ranges of the engine contract's ``BOUNDS``; content blocks are checked one by one in
``convert`` (so an ``image`` block is a 400 that says what is missing, not a union mismatch).
Unknown fields (``metadata``, ``thinking``, ``service_tier``, ``cache_control`` …) are
ignored, as Anthropic's own SDKs send more than a local server needs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from deskai.engine.sampling import MAX_STOP_SEQUENCES
from deskai.server.openai.models import bounded

MAX_MODEL_NAME = 200


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AnthropicInputMessage(_Wire):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class AnthropicToolSpec(_Wire):
    """A client tool: ``name``, ``description``, ``input_schema``. Anthropic's server tools
    (``web_search_…``, ``bash_…``, ``text_editor_…``) carry a ``type`` and are refused."""

    type: str | None = None
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class AnthropicToolChoice(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: StrictBool = False


class AnthropicOutputFormat(_Wire):
    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")


class AnthropicOutputConfig(_Wire):
    """``format``: structured output (a JSON schema the answer follows); ``effort`` is
    ignored."""

    format: AnthropicOutputFormat | None = None


class AnthropicConversation(_Wire):
    """What shapes the prompt: shared by /v1/messages and /v1/messages/count_tokens."""

    model: str = Field(min_length=1, max_length=MAX_MODEL_NAME)
    system: str | list[dict[str, Any]] | None = None
    messages: list[AnthropicInputMessage] = Field(min_length=1)
    tools: list[AnthropicToolSpec] | None = None
    tool_choice: AnthropicToolChoice | None = None
    output_config: AnthropicOutputConfig | None = None


class AnthropicCountTokensRequest(AnthropicConversation):
    pass


class AnthropicMessagesRequest(AnthropicConversation):
    """Sampling fields as Anthropic names them; newer ``anthropic`` clients no longer list
    ``temperature``, ``top_p`` and ``top_k`` (send them with ``extra_body``)."""

    max_tokens: int = bounded("max_tokens", ...)  # required, as Anthropic requires it
    temperature: float | None = bounded("temperature")
    top_p: float | None = bounded("top_p")
    top_k: int | None = bounded("top_k")
    stop_sequences: list[str] | None = None
    stream: StrictBool = False
    metadata: dict[str, Any] | None = None  # accepted and ignored (user_id)

    @field_validator("stop_sequences")
    @classmethod
    def _check_stops(cls, value: list[str] | None) -> list[str] | None:
        if value and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not stop for stop in value or []):
            raise ValueError("stop sequences must not be empty")
        return value


# -- responses --------------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class AnthropicTextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class AnthropicToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class AnthropicUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class AnthropicMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[AnthropicTextBlock | AnthropicToolUseBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: AnthropicUsage


class AnthropicTokenCount(BaseModel):
    input_tokens: int


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    type: Literal["error"] = "error"
    error: AnthropicErrorDetail

"""The Responses API's request body, as deskai accepts it (OpenAI's wire names).

Sampling ranges come from the engine contract's ``BOUNDS``, as for the other APIs. Fields that
configure OpenAI's hosted features (``reasoning``, ``include``, ``truncation``, ``service_tier``)
are accepted and ignored, as vLLM and llama-server do; unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from deskai.server.openai.models import bounded


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: TextFormat = Field(default_factory=TextFormat)


class ResponseRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool = True
    text: TextConfig | None = None
    temperature: float | None = bounded("temperature")
    top_p: float | None = bounded("top_p")
    max_output_tokens: int | None = bounded("max_tokens")
    stream: StrictBool = False
    store: StrictBool = True
    previous_response_id: str | None = Field(default=None, max_length=200)
    metadata: dict[str, str] | None = None
    user: str | None = None
    reasoning: dict[str, Any] | None = None

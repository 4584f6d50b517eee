"""Ollama's wire format: the request bodies of ``/api/*`` and the responses deskai returns.

Field names and defaults follow Ollama's API (docs/api.md in the ollama repository): streaming
is on unless ``"stream": false``, durations are nanoseconds, ``keep_alive`` is seconds or a
Go-style duration string. Unknown fields are ignored, as Ollama does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from deskai.engine.sampling import MAX_STOP_SEQUENCES

KeepAlive = float | int | str | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _NamedRequest(_Request):
    """Older clients send ``name`` where newer ones send ``model``; both are accepted."""

    model: str = Field(default="", max_length=2000)
    name: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _name_is_model(self) -> _NamedRequest:
        if not self.model and self.name:
            self.model = self.name
        if not self.model:
            raise ValueError("model is required")
        return self


class Options(_Request):
    """The runtime options deskai honours; the rest of Ollama's (``num_gpu``, ``mirostat``,
    ``num_ctx``…) are accepted and ignored, because they configure the server, not a request."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = None
    num_predict: int | None = None
    stop: list[str] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    num_ctx: int | None = None


class _GenerateFields(_NamedRequest):
    stream: StrictBool = True
    format: Literal["", "json"] | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: KeepAlive = None
    think: StrictBool | str | None = None


class GenerateRequest(_GenerateFields):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: StrictBool = False
    images: list[str] | None = None


class ToolCallFunction(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(BaseModel):
    function: ToolCallFunction


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None


class ChatRequest(_GenerateFields):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class EmbedRequest(_NamedRequest):
    input: str | list[str] = ""
    truncate: StrictBool = True
    options: Options | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = None


class LegacyEmbeddingRequest(_NamedRequest):
    """/api/embeddings, the route ``ollama.Client().embeddings()`` still calls: one prompt."""

    prompt: str = ""
    options: Options | None = None
    keep_alive: KeepAlive = None


class ModelRequest(_NamedRequest):
    """/api/show, /api/delete."""

    verbose: StrictBool = False


class CopyRequest(_Request):
    source: str = Field(min_length=1, max_length=2000)
    destination: str = Field(min_length=1, max_length=2000)


class PullRequest(_NamedRequest):
    insecure: StrictBool = False
    stream: StrictBool = True


# -- responses --------------------------------------------------------------------------------

class ModelDetails(BaseModel):
    parent_model: str = ""
    format: str = "gguf"
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class ListedModel(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class TagsResponse(BaseModel):
    models: list[ListedModel]


class RunningModel(BaseModel):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int
    context_length: int


class PsResponse(BaseModel):
    models: list[RunningModel]


class ShowResponse(BaseModel):
    modelfile: str
    parameters: str
    template: str
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class VersionResponse(BaseModel):
    version: str

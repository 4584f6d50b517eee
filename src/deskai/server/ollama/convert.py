"""Pure converters between Ollama's wire models and deskai's native generation path.

``from_*`` turn an Ollama request into a prompt and ``SamplingParams``; ``to_*`` build Ollama's
responses and NDJSON lines from native results. No I/O here.

Options map onto ``SamplingParams``: ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``seed``
(negative means random), ``num_predict`` (``-1``/``-2``/``0`` mean no limit), ``stop`` (added to
the chat format's own), ``repeat_penalty``, ``presence_penalty``, ``frequency_penalty``. Options
that size the model in memory (``num_ctx``, ``num_gpu``, ``num_thread``…) are ignored: the
server's ``--context``/``--threads`` decide, for every client alike. Unset options keep deskai's
defaults (those of the OpenAI routes), so both APIs sample alike.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deskai.engine.sampling import SamplingParams, StructuredOutput
from deskai.errors import InvalidInputError
from deskai.frontend.chat import JSON_OBJECT_SCHEMA, ChatPrompt, json_output, shape_chat
from deskai.frontend.chat_template import ChatTemplate, RenderedPrompt
from deskai.frontend.tools import parse_tool_calls
from deskai.runtime.manager import LoadedModel
from deskai.server.ollama.models import (
    ChatRequest,
    GenerateRequest,
    KeepAlive,
    ListedModel,
    Message,
    ModelDetails,
    Options,
    RunningModel,
)
from deskai.store import Manifest

FOREVER = -1.0
MAX_KEEP_ALIVE = 100 * 365 * 24 * 3600.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


# -- requests ---------------------------------------------------------------------------------

def parse_keep_alive(value: KeepAlive) -> float | None:
    """Seconds to keep the model loaded; None means the server's default, -1 forever.

    Ollama takes a number of seconds or a Go duration (``"5m"``, ``"1h30m"``, ``"-1"``);
    any negative value means "keep loaded", and so does anything beyond a century (no clock
    or date type deals in such times). ``NaN`` and infinities are refused.
    """
    if value is None or value == "":
        return None
    try:
        seconds = (float(value) if isinstance(value, int | float)
                   else _parse_duration(value.strip()))
    except OverflowError:  # an integer too big for a float: beyond any century
        return FOREVER
    if not math.isfinite(seconds):
        raise InvalidInputError(f"invalid keep_alive {value!r}: use seconds or a duration "
                                "such as '5m'", param="keep_alive")
    return FOREVER if seconds < 0 or seconds > MAX_KEEP_ALIVE else seconds


def _parse_duration(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION_PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise InvalidInputError(f"invalid keep_alive {text!r}: use seconds or a duration such "
                                "as '5m' or '1h30m'", param="keep_alive")
    return sign * sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def sampling_params(options: Options | None, *, extra_stop: list[str],
                    structured: StructuredOutput | None) -> SamplingParams:
    """Ollama's options; what is unset keeps the contract's defaults."""
    opts = options or Options()
    return SamplingParams.given(
        max_tokens=opts.num_predict if opts.num_predict and opts.num_predict > 0 else None,
        temperature=opts.temperature,
        top_p=opts.top_p,
        top_k=opts.top_k,
        min_p=opts.min_p,
        seed=None if opts.seed is None or opts.seed < 0 else opts.seed % 2**32,
        stop=list(opts.stop or []) + extra_stop,
        repeat_penalty=opts.repeat_penalty,
        presence_penalty=opts.presence_penalty,
        frequency_penalty=opts.frequency_penalty,
        structured=structured,
    )


def format_constraint(format: str | dict[str, Any] | None) -> StructuredOutput | None:
    """``"json"`` → any JSON object; a schema → that schema, enforced (or a clear 400)."""
    if not format:
        return None
    return json_output(JSON_OBJECT_SCHEMA if format == "json" else format, field="format")


def check_unsupported(body: GenerateRequest | ChatRequest) -> None:
    """Refuse what deskai cannot do, rather than silently answer without it."""
    if body.think:
        raise InvalidInputError(f"{body.model!r} does not support thinking", param="think")
    images = body.images if isinstance(body, GenerateRequest) else [
        image for message in body.messages for image in (message.images or [])]
    if images:
        raise InvalidInputError(f"{body.model!r} does not support images", param="images")
    if isinstance(body, GenerateRequest) and body.suffix:
        raise InvalidInputError(f"{body.model!r} does not support insert (suffix)",
                                param="suffix")
    if isinstance(body, GenerateRequest) and body.template:
        raise InvalidInputError("template overrides (Go templates) are not supported; the "
                                "model's own chat template is used", param="template")


def is_load_only(body: GenerateRequest | ChatRequest) -> bool:
    """Ollama loads (or, with keep_alive 0, unloads) a model on a request with no input."""
    if isinstance(body, ChatRequest):
        return not body.messages
    return not body.prompt and not body.system


def from_generate_request(body: GenerateRequest, template: ChatTemplate) -> RenderedPrompt:
    """The prompt text: raw, the prompt as-is for a model without a chat format (a base model
    continues text, as Ollama's ``{{ .Prompt }}`` template does), else the chat format."""
    prompt = body.prompt or ""
    if body.raw:
        return RenderedPrompt(prompt)
    if template.is_fallback:
        return RenderedPrompt(f"{body.system}\n\n{prompt}" if body.system else prompt)
    messages = ([{"role": "system", "content": body.system}] if body.system else [])
    return template.render([*messages, {"role": "user", "content": prompt}])


def from_chat_request(body: ChatRequest, template: ChatTemplate) -> ChatPrompt:
    """The prompt, and the constraint that keeps any tool call's arguments valid.

    Ollama has no ``tool_choice``: with tools the model may answer or call (OpenAI's "auto").
    """
    messages = [native_message(m) for m in body.messages]
    return shape_chat(messages, template, tools=body.tools or None, tool_choice="auto",
                      structured=format_constraint(body.format))


def to_tool_calls(text: str, *, cut_short: bool = False) -> list[dict[str, Any]] | None:
    """Calls found in the model's output, in Ollama's shape (``arguments`` an object); with
    ``cut_short``, the whole ones before ``max_tokens`` cut it."""
    calls = parse_tool_calls(text, cut_short=cut_short)
    if not calls:
        return None
    return [{"function": {"name": call.name, "arguments": json.loads(call.arguments)}}
            for call in calls]


def native_message(message: Message) -> dict[str, Any]:
    """An Ollama message as chat templates expect it (tool calls in OpenAI's shape)."""
    data: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        data["tool_calls"] = [{"type": "function", "function": {
            "name": call.function.name, "arguments": call.function.arguments}}
            for call in message.tool_calls]
    if message.tool_name:
        data["name"] = message.tool_name
    return data


# -- responses --------------------------------------------------------------------------------

@dataclass(slots=True)
class Timings:
    """Nanosecond clock readings for Ollama's duration fields."""

    start: int
    loaded: int
    first_token: int | None = None
    end: int | None = None

    def stats(self, prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        end = self.end or self.loaded
        first = self.first_token or end
        return {"total_duration": end - self.start, "load_duration": self.loaded - self.start,
                "prompt_eval_count": prompt_tokens, "prompt_eval_duration": first - self.loaded,
                "eval_count": completion_tokens, "eval_duration": end - first}


def timestamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def generate_chunk(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "created_at": timestamp(), "response": text, "done": False}


def chat_chunk(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "created_at": timestamp(),
            "message": {"role": "assistant", "content": text}, "done": False}


def done_chunk(base: dict[str, Any], reason: str, stats: dict[str, int] | None = None,
               **extra: Any) -> dict[str, Any]:
    """The last line: ``done`` with its reason, timings and counts."""
    return {**base, "created_at": timestamp(), "done": True, "done_reason": reason,
            **(stats or {}), **extra}


def ndjson(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"


def details_of(manifest: Manifest) -> ModelDetails:
    details = manifest.details
    family = str(details.get("architecture", "unknown"))
    return ModelDetails(family=family, families=[family],
                        parameter_size=parameter_size(details.get("parameter_count")),
                        quantization_level=str(details.get("quantization", "unknown")))


def parameter_size(count: object) -> str:
    """Ollama's style: ``268.10M``, ``7.2B``."""
    if not isinstance(count, int) or count <= 0:
        return "unknown"
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.2f}M"


def to_listed(manifest: Manifest) -> ListedModel:
    return ListedModel(name=manifest.name, model=manifest.name,
                       modified_at=manifest.created_at, size=manifest.size,
                       digest=manifest.model_layer.digest.removeprefix("sha256:"),
                       details=details_of(manifest))


def to_running(loaded: LoadedModel, *, now_monotonic: float) -> RunningModel:
    manifest = loaded.manifest
    expires = loaded.expires_at
    if expires is None:  # kept forever: Ollama reports a far-future time
        when = datetime(2318, 1, 1, tzinfo=UTC)
    else:
        when = datetime.fromtimestamp(datetime.now(UTC).timestamp() + expires - now_monotonic,
                                      UTC)
    return RunningModel(name=manifest.name, model=manifest.name, size=manifest.size,
                        digest=manifest.model_layer.digest.removeprefix("sha256:"),
                        details=details_of(manifest),
                        expires_at=when.isoformat().replace("+00:00", "Z"), size_vram=0,
                        context_length=loaded.facts.context_length)

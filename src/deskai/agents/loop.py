"""The agent loop: the model's turn, its tool calls run, their results back to the model —
until it answers in text or ``max_steps`` turns have passed.

Each step is one model turn. Everything that happens is an ``AgentEvent`` handed to a callback
(the CLI prints it, or writes it as a JSON line): a ``call``, its ``result`` (or an ``error``
the model reads in its place), and at the end the ``answer`` — or an ``error`` saying the steps
ran out. ``tool_choice`` applies to the first step only ("required" forces a call there, even
from a base model that would never make one); later steps are "auto".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import anyio

from deskai.agents.model import ChatModel
from deskai.agents.toolbox import Toolbox, ToolResult
from deskai.errors import InvalidInputError
from deskai.frontend.tools import ToolCall

EventKind = Literal["call", "result", "answer", "error"]


@dataclass(frozen=True, slots=True)
class AgentEvent:
    step: int
    kind: EventKind
    name: str | None = None  # the tool's
    arguments: dict[str, Any] | None = None  # a call's
    text: str | None = None  # a result's, an error's, the answer's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AgentRun:
    """How a run ended: the answer (None if the steps ran out) and the whole conversation."""

    answer: str | None
    steps: int
    messages: list[dict[str, Any]] = field(default_factory=list)


async def run_agent(model: ChatModel, toolbox: Toolbox, task: str, *, max_steps: int = 8,
                    tool_choice: Any = "auto", parallel_tool_calls: bool = True,
                    system: str | None = None,
                    on_event: Callable[[AgentEvent], None] = lambda event: None) -> AgentRun:
    """Run ``task`` to an answer, or for ``max_steps`` model turns at most."""
    if max_steps < 1:
        raise InvalidInputError("max_steps must be at least 1", param="max_steps")
    tools = toolbox.tools()
    if tool_choice not in (None, "auto", "none") and not tools:
        raise InvalidInputError(f"tool_choice {tool_choice!r} needs at least one tool",
                                param="tool_choice")
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": task})
    for step in range(1, max_steps + 1):
        choice = tool_choice if step == 1 else "auto"
        turn = await anyio.to_thread.run_sync(model.turn, messages, tools, choice,
                                              parallel_tool_calls)
        if not turn.calls and choice not in (None, "auto", "none"):
            # a forced call that did not come whole (cut by max_tokens) is no answer either
            on_event(AgentEvent(step, "error", text=f"the model had to call a tool but gave no "
                                f"whole call (it stopped: {turn.finish_reason}); give it more "
                                "tokens"))
            return AgentRun(None, step, messages)
        if not turn.calls:
            messages.append({"role": "assistant", "content": turn.text})
            on_event(AgentEvent(step, "answer", text=turn.text))
            return AgentRun(turn.text, step, messages)
        messages.append({"role": "assistant", "content": None,
                         "tool_calls": [_wire_call(call) for call in turn.calls]})
        for call in turn.calls:
            result = await _run_call(toolbox, call, step, on_event)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result.text})
    steps = f"{max_steps} step{'s' if max_steps > 1 else ''}"
    on_event(AgentEvent(max_steps, "error", text=f"no answer within {steps}"))
    return AgentRun(None, max_steps, messages)


async def _run_call(toolbox: Toolbox, call: ToolCall, step: int,
                    on_event: Callable[[AgentEvent], None]) -> ToolResult:
    arguments = _arguments(call)
    # arguments that are no JSON object (a server's model may write anything) are shown as
    # they came, and the model is told so instead of the tool running
    on_event(AgentEvent(step, "call", call.name, arguments,
                        None if arguments is not None else call.arguments))
    if arguments is None:
        result = ToolResult(f"{call.name}: the arguments must be a JSON object, got "
                            f"{call.arguments}", is_error=True)
    else:
        result = await toolbox.call(call.name, arguments)
    on_event(AgentEvent(step, "error" if result.is_error else "result", call.name,
                        text=result.text))
    return result


def _arguments(call: ToolCall) -> dict[str, Any] | None:
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return None
    return arguments if isinstance(arguments, dict) else None


def _wire_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}

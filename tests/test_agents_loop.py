"""The agent loop with the real bundled model (a base model, forced into a call) and a test
MCP server: the tool really runs, its result (or its failure) reaches the next prompt, and the
loop ends within its steps. A scripted model covers the loop's own rules quickly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents_support import calc_server, run
from conftest import REAL_MODEL

from deskai.agents.builtin import builtin_source
from deskai.agents.loop import AgentEvent, run_agent
from deskai.agents.mcp_client import open_toolbox
from deskai.agents.model import LocalChatModel, Turn
from deskai.engine import EngineOptions, SamplingParams
from deskai.errors import InvalidInputError
from deskai.frontend.tools import ToolCall
from deskai.runtime.manager import LoadedModel, ModelManager
from deskai.store import Store

# enough for one whole forced call ({"tool_calls": [{"name": "add", "arguments": {...}}]})
MAX_TOKENS = 32


@pytest.fixture(scope="module")
def loaded(shared_home: Path) -> Iterator[LoadedModel]:
    manager = ModelManager(Store(shared_home), EngineOptions(context_length=1024, parallel=1,
                                                             threads=2), keep_alive=-1)
    yield manager.get(REAL_MODEL)
    manager.close()


@pytest.fixture
def prompts(loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every prompt the model is given, in order."""
    seen: list[str] = []
    generate = loaded.generate

    def recording(prompt: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(prompt)
        return generate(prompt, *args, **kwargs)

    monkeypatch.setattr(loaded, "generate", recording)
    return seen


def _run(loaded: LoadedModel, servers: list[Any], task: str, *, call_timeout: float = 60,
         max_steps: int = 2) -> tuple[Any, list[AgentEvent], float]:
    events: list[AgentEvent] = []

    async def main() -> Any:
        async with open_toolbox(servers, call_timeout=call_timeout) as toolbox:
            return await run_agent(LocalChatModel(loaded, SamplingParams(max_tokens=MAX_TOKENS)),
                                   toolbox, task, max_steps=max_steps, tool_choice="required",
                                   parallel_tool_calls=False, on_event=events.append)

    started = time.monotonic()
    return run(main()), events, time.monotonic() - started


def test_a_forced_call_runs_and_its_result_reaches_the_model(
        loaded: LoadedModel, prompts: list[str], tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    agent_run, events, _ = _run(loaded, [calc_server(record, "add")],
                                "What is 2 + 3? Use the add tool.")
    assert len(events) >= 2, events
    call, result = events[0], events[1]
    assert (call.step, call.kind, call.name) == (1, "call", "add")
    assert call.arguments is not None and set(call.arguments) == {"a", "b"}
    assert json.loads(record.read_text().splitlines()[0]) == {"tool": "add", **call.arguments}
    assert result.kind == "result" and result.text is not None and "SUM-IS" in result.text
    assert result.text in prompts[1]  # the second turn read the first one's result
    assert agent_run.steps <= 2 and len(prompts) == agent_run.steps
    assert events[-1].kind in ("answer", "error")  # an answer, or the steps ran out
    tool_message = next(m for m in agent_run.messages if m["role"] == "tool")
    assert tool_message["content"] == result.text and tool_message["tool_call_id"]


@pytest.mark.parametrize(("tool", "arguments_seen", "error"), [
    ("explode", {"code"}, "exploded on purpose"),
    ("hang", set(), "did not finish within 1 s"),
])
def test_a_failing_tool_ends_its_step_with_an_error_the_model_sees(
        loaded: LoadedModel, prompts: list[str], tmp_path: Path, tool: str,
        arguments_seen: set[str], error: str) -> None:
    # the task names the arguments: left to itself, a base model writes digits until the cut
    agent_run, events, took = _run(loaded, [calc_server(tmp_path / "record.jsonl", tool)],
                                   f"Call {tool} with code 7.", call_timeout=1.0)
    assert len(events) >= 2, events
    call, failure = events[0], events[1]
    assert call.kind == "call" and call.name == tool and set(call.arguments or {}) == \
        arguments_seen
    assert failure.kind == "error" and failure.name == tool and failure.text is not None
    assert error in failure.text and failure.text in prompts[1]
    assert agent_run.steps <= 2 and took < 60  # and the run (servers included) closed cleanly


def test_builtin_and_mcp_tools_share_one_toolbox(tmp_path: Path) -> None:
    async def main() -> list[str]:
        async with open_toolbox([calc_server(tmp_path / "r", "add")],
                                [builtin_source(["python", f"files={tmp_path}"])]) as toolbox:
            return sorted(toolbox.names())

    assert run(main()) == ["add", "list_files", "python", "read_file", "write_file"]


class ScriptedModel:
    """A model that says what it is told, turn after turn (and remembers what it was shown)."""

    def __init__(self, *turns: Turn) -> None:
        self.turns = list(turns)
        self.seen: list[tuple[list[dict[str, Any]], Any]] = []

    def turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
             tool_choice: Any, parallel_tool_calls: bool) -> Turn:
        self.seen.append(([dict(m) for m in messages], tool_choice))
        return self.turns.pop(0)


def _call(name: str, arguments: str) -> Turn:
    return Turn("", [ToolCall(f"call_{name}", name, arguments)], "stop")


def _scripted(model: ScriptedModel, tmp_path: Path, **options: Any) -> tuple[Any, list[str]]:
    events: list[AgentEvent] = []

    async def main() -> Any:
        async with open_toolbox([], [builtin_source([f"files={tmp_path}"])]) as toolbox:
            return await run_agent(model, toolbox, "task", on_event=events.append, **options)

    return run(main()), [f"{e.step}:{e.kind}:{e.name or ''}" for e in events]


def test_the_loop_goes_until_the_model_answers(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("42")
    model = ScriptedModel(_call("read_file", '{"path": "note.txt"}'),
                          _call("read_file", "not json"), Turn("It says 42.", [], "stop"))
    agent_run, events = _scripted(model, tmp_path, tool_choice="required", system="Be brief.")
    assert events == ["1:call:read_file", "1:result:read_file", "2:call:read_file",
                      "2:error:read_file", "3:answer:"]
    assert agent_run.answer == "It says 42." and agent_run.steps == 3
    assert [choice for _, choice in model.seen] == ["required", "auto", "auto"]
    last_messages = model.seen[-1][0]
    assert [m["role"] for m in last_messages] == ["system", "user", "assistant", "tool",
                                                  "assistant", "tool"]
    assert last_messages[3] == {"role": "tool", "tool_call_id": "call_read_file",
                                "content": "42"}


def test_the_loop_stops_at_max_steps(tmp_path: Path) -> None:
    model = ScriptedModel(*[_call("list_files", "{}")] * 3)
    agent_run, events = _scripted(model, tmp_path, max_steps=2)
    assert events[-1] == "2:error:" and agent_run.answer is None and len(model.seen) == 2


def test_a_forced_turn_without_a_whole_call_is_no_answer(tmp_path: Path) -> None:
    model = ScriptedModel(Turn('{"tool_calls": [{"na', [], "length"))
    agent_run, events = _scripted(model, tmp_path, tool_choice="required")
    assert events == ["1:error:"] and agent_run.answer is None


def test_required_without_tools_is_refused() -> None:
    async def main() -> None:
        async with open_toolbox([]) as toolbox:
            await run_agent(ScriptedModel(), toolbox, "task", tool_choice="required")

    with pytest.raises(InvalidInputError, match="needs at least one tool"):
        run(main())

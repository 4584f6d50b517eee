"""Training data: read JSONL in any supported format into canonical chat conversations.

The canonical format is OpenAI chat ``messages`` (one JSON object per line)::

    {"messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "...", "tool_calls": [...]},
                  {"role": "tool", "tool_call_id": "...", "content": "..."}]}

Converted on the way in (detected per line, so a file may even mix them):

- Alpaca: ``{"instruction", "input"?, "output", "system"?}``
- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system"|..., "value": "..."}]}``
- plain text for continued pretraining: ``{"text": "..."}`` lines, or a ``.txt`` file whose
  blank-line-separated paragraphs are documents.

Every problem is reported with its line number, and all of them at once (up to a limit), so a
user fixes a file in one pass rather than one error per run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deskai.errors import TrainingDataError

Message = dict[str, Any]

_ROLES = {"system", "developer", "user", "assistant", "tool"}
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "model": "assistant", "chatgpt": "assistant", "bing": "assistant",
                   "system": "system", "tool": "tool", "function_call": "assistant",
                   "observation": "tool", "function": "tool"}
MAX_REPORTED = 10


@dataclass(frozen=True, slots=True)
class Example:
    """One training example: a conversation, or a plain-text document (``text``)."""

    line: int  # 1-based line (or paragraph, for .txt) it came from, for error messages
    messages: tuple[Message, ...] = ()
    text: str | None = None

    @property
    def is_text(self) -> bool:
        return self.text is not None


@dataclass(slots=True)
class Dataset:
    """The examples of one file, and the sha256 of its bytes (recorded in the manifest)."""

    path: Path
    examples: list[Example]
    sha256: str
    formats: set[str] = field(default_factory=set)


def load_dataset(path: str | Path) -> Dataset:
    """Read and convert ``path``; ``TrainingDataError`` lists every malformed line."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise TrainingDataError(f"cannot read training data {source}: {exc.strerror}") from None
    digest = hashlib.sha256(raw).hexdigest()
    text = raw.decode("utf-8", errors="replace")
    if source.suffix == ".txt":
        examples = [Example(line, text=para) for line, para in _paragraphs(text)]
        return Dataset(source, examples, digest, {"text"})
    examples, formats, problems = [], set(), []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example, kind = parse_line(line, number)
        except TrainingDataError as exc:
            problems.append(str(exc))
            continue
        examples.append(example)
        formats.add(kind)
    raise_problems(source, problems)
    if not examples:
        raise TrainingDataError(f"{source}: no examples (an empty file?)")
    return Dataset(source, examples, digest, formats)


def raise_problems(source: Path, problems: list[str]) -> None:
    """One error listing the first problems and how many more there are."""
    if not problems:
        return
    shown = "; ".join(problems[:MAX_REPORTED])
    more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
    raise TrainingDataError(f"{source}: {len(problems)} bad example(s): {shown}{more}")


def parse_line(line: str, number: int) -> tuple[Example, str]:
    """One JSONL line → an ``Example`` and the name of the format it was in."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrainingDataError(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise TrainingDataError(f"line {number}: expected a JSON object")
    if "messages" in record:
        return Example(number, tuple(_checked_messages(record["messages"], number))), "messages"
    if "conversations" in record:
        return Example(number, tuple(_from_sharegpt(record["conversations"], number))), "sharegpt"
    if "instruction" in record and "output" in record:
        return Example(number, tuple(_from_alpaca(record, number))), "alpaca"
    if "text" in record:
        if not isinstance(record["text"], str) or not record["text"].strip():
            raise TrainingDataError(f"line {number}: \"text\" must be a non-empty string")
        return Example(number, text=record["text"]), "text"
    raise TrainingDataError(f"line {number}: unknown format (expected \"messages\", "
                            "\"conversations\", \"instruction\"+\"output\" or \"text\")")


def _checked_messages(messages: Any, number: int) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise TrainingDataError(f"line {number}: \"messages\" must be a non-empty list")
    checked = []
    for index, message in enumerate(messages):
        where = f"line {number}, message {index}"
        if not isinstance(message, dict):
            raise TrainingDataError(f"{where}: expected an object")
        role = message.get("role")
        if role not in _ROLES:
            raise TrainingDataError(f"{where}: unknown role {role!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise TrainingDataError(f"{where}: content must be a string or a list of parts")
        if role == "assistant" and not content and not message.get("tool_calls"):
            raise TrainingDataError(f"{where}: an assistant message needs content or tool_calls")
        _check_tool_calls(message.get("tool_calls"), where)
        checked.append(message)
    if not any(m["role"] == "assistant" for m in checked):
        raise TrainingDataError(f"line {number}: no assistant message, so nothing to learn")
    return checked


def _check_tool_calls(calls: Any, where: str) -> None:
    if calls is None:
        return
    if not isinstance(calls, list):
        raise TrainingDataError(f"{where}: tool_calls must be a list")
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TrainingDataError(f"{where}: each tool call needs function.name")


def _from_alpaca(record: dict[str, Any], number: int) -> list[Message]:
    instruction, extra = record.get("instruction"), record.get("input") or ""
    output = record.get("output")
    if not isinstance(instruction, str) or not isinstance(output, str) or not output.strip():
        raise TrainingDataError(f"line {number}: alpaca needs string instruction and output")
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    messages: list[Message] = []
    if record.get("system"):
        messages.append({"role": "system", "content": str(record["system"])})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return messages


def _from_sharegpt(turns: Any, number: int) -> list[Message]:
    if not isinstance(turns, list) or not turns:
        raise TrainingDataError(f"line {number}: \"conversations\" must be a non-empty list")
    messages = []
    for index, turn in enumerate(turns):
        speaker = turn.get("from") if isinstance(turn, dict) else None
        role = _SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None or not isinstance(turn.get("value"), str):
            raise TrainingDataError(f"line {number}, turn {index}: unknown speaker {speaker!r} "
                                    "or missing \"value\"")
        messages.append({"role": role, "content": turn["value"]})
    return _checked_messages(messages, number)


def _paragraphs(text: str) -> list[tuple[int, str]]:
    """Blank-line separated documents of a .txt file, with the line each starts on."""
    found: list[tuple[int, str]] = []
    current: list[str] = []
    start = 1
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            found.append((start, "\n".join(current)))
            current = []
    if current:
        found.append((start, "\n".join(current)))
    return found

"""Conversations → token ids and labels: chat template, prompt masking, trained end-of-turn.

Masking is positional, never by token id: the template is rendered once per assistant turn with
and without that turn, and only the text the assistant wrote (plus the template's end-of-turn
marker) gets labels. So a model whose pad token equals its end-of-turn token still learns to
stop — the classic "never stops" bug of pad-id masking cannot happen here — and deskai refuses
such a model anyway, because whatever pads with that id at serving time would end turns.

The tokenizer is the one that serves the model: llama.cpp's own vocabulary for a GGUF base (so
training and ``deskai run`` split text identically), the Hugging Face tokenizer for a directory.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deskai.errors import TrainingDataError
from deskai.frontend.chat_template import ChatTemplate, text_of
from deskai.tune.data import Dataset, Example, Message, raise_problems

IGNORE = -100  # label of a position that is not trained (PyTorch's cross-entropy convention)

# Gemma 3's chat template as Google publishes it in tokenizer_config.json; documented for the
# base model, whose GGUF carries none. Stored in the tuned model's manifest so serving renders
# prompts exactly as training did.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate "
    "user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)


class Tokenizer(Protocol):
    bos_id: int
    eos_id: int
    pad_id: int | None

    def encode(self, text: str) -> list[int]: ...  # special tokens parsed, no BOS added

    def token_text(self, token: int) -> str: ...


@dataclass(frozen=True, slots=True)
class Sample:
    """One tokenized example; ``labels[i]`` is the target of position ``i`` (already shifted)."""

    line: int
    input_ids: list[int]
    labels: list[int]

    @property
    def n_trained(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass(frozen=True, slots=True)
class Formatter:
    """How conversations of one base model become samples."""

    template: ChatTemplate
    tokenizer: Tokenizer
    end_of_turn_id: int  # trained after every assistant turn
    append_end: bool  # the template writes no end marker of its own, so one is appended

    def sample(self, example: Example) -> Sample:
        if example.is_text:
            ids = [self.tokenizer.bos_id, *self.tokenizer.encode(example.text or ""),
                   self.tokenizer.eos_id]
            return _shifted(example.line, ids, [True] * len(ids))
        return self._conversation(example)

    def _conversation(self, example: Example) -> Sample:
        messages = normalize_messages(list(example.messages))
        ids: list[int] = []
        trained: list[bool] = []
        done = ""
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.template.render(messages[:index], add_generation_prompt=True).text
            full = self.template.render(messages[: index + 1], add_generation_prompt=False).text
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise TrainingDataError(f"line {example.line}: the chat template does not render "
                                        "turns as prefixes of each other; cannot mask prompts")
            self._extend(ids, trained, prompt[len(done):], train=False)
            self._extend(ids, trained, full[len(prompt):], train=True)
            if self.append_end:
                ids.append(self.end_of_turn_id)
                trained.append(True)
            done = full
        return _shifted(example.line, ids, trained)

    def _extend(self, ids: list[int], trained: list[bool], text: str, *, train: bool) -> None:
        if not ids and text.startswith(self.template.bos_token or "\0"):
            text = text[len(self.template.bos_token):]
        if not ids:
            ids.append(self.tokenizer.bos_id)
            trained.append(False)
        pieces = self.tokenizer.encode(text)
        ids.extend(pieces)
        trained.extend([train] * len(pieces))


def _shifted(line: int, ids: list[int], trained: list[bool]) -> Sample:
    """Labels for next-token prediction: position i predicts token i+1 if that one is trained."""
    labels = [ids[i + 1] if trained[i + 1] else IGNORE for i in range(len(ids) - 1)]
    return Sample(line, ids[:-1], labels)


def normalize_messages(messages: list[Message]) -> list[Message]:
    """Tool calls and results as text the template can hold; consecutive roles merged.

    Gemma's template (like many) knows only system/user/assistant and strict alternation, so
    an assistant's tool calls become ``<tool_call>{json}</tool_call>`` lines in its turn and a
    tool result becomes a user turn ``<tool_response>...</tool_response>``.
    """
    out: list[Message] = []
    for message in messages:
        role, content = message["role"], text_of(message.get("content"))
        if role == "developer":
            role = "system"
        if role == "assistant" and message.get("tool_calls"):
            calls = [_tool_call_text(call) for call in message["tool_calls"]]
            content = "\n".join(filter(None, [content, *calls]))
        if role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        if out and out[-1]["role"] == role and role != "system":
            out[-1] = {"role": role, "content": f"{out[-1]['content']}\n\n{content}"}
        else:
            out.append({"role": role, "content": content})
    return out


def _tool_call_text(call: dict[str, Any]) -> str:
    function = call["function"]
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):  # keep non-JSON arguments verbatim
            arguments = json.loads(arguments)
    body = json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def make_formatter(template: ChatTemplate, tokenizer: Tokenizer) -> Formatter:
    """Find the template's end-of-turn marker by rendering a probe, and check it is trainable."""
    probe = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "PROBE"}]
    prompt = template.render(probe[:1], add_generation_prompt=True).text
    full = template.render(probe, add_generation_prompt=False).text
    marker = full[len(prompt):].split("PROBE", 1)[-1].strip()
    marker_ids = tokenizer.encode(marker) if marker else []
    if len(marker_ids) == 1:
        end_id, append = marker_ids[0], False
    else:
        end_id, append = tokenizer.eos_id, True
    if tokenizer.pad_id is not None and tokenizer.pad_id == end_id:
        raise TrainingDataError(
            f"the pad token equals the end-of-turn token ({tokenizer.token_text(end_id)!r}, id "
            f"{end_id}): padding would teach the model to end turns everywhere, or masking pads "
            "would teach it never to stop; give the tokenizer a distinct pad token")
    return Formatter(template, tokenizer, end_id, append)


def tokenize_dataset(dataset: Dataset, formatter: Formatter, max_length: int) -> list[Sample]:
    """Every example as a sample, refusing (with line numbers) what would train nothing."""
    samples, problems = [], []
    for example in dataset.examples:
        try:
            sample = formatter.sample(example)
        except TrainingDataError as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # a template's raise_exception, e.g. roles not alternating
            problems.append(f"line {example.line}: {exc}")
            continue
        if sample.n_trained == 0:
            problems.append(f"line {example.line}: every label is masked (nothing to learn)")
        elif len(sample.input_ids) > max_length:
            problems.append(f"line {example.line}: {len(sample.input_ids)} tokens, longer than "
                            f"the context of {max_length} (shorten it or raise --max-length)")
        elif not example.is_text and formatter.end_of_turn_id not in sample.labels:
            problems.append(f"line {example.line}: the end-of-turn token is not trained")
        else:
            samples.append(sample)
    raise_problems(dataset.path, problems)
    return samples


class LlamaCppTokenizer:
    """llama.cpp's vocabulary of a GGUF (weights not loaded): the tokenizer serving uses."""

    def __init__(self, gguf: Path) -> None:
        import llama_cpp

        self._llama = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
        self.bos_id = int(self._llama.token_bos())
        self.eos_id = int(self._llama.token_eos())
        pad = self._llama.metadata.get("tokenizer.ggml.padding_token_id")
        self.pad_id = int(pad) if pad is not None else None
        self.chat_template = self._llama.metadata.get("tokenizer.chat_template")
        self.architecture = self._llama.metadata.get("general.architecture", "")

    def encode(self, text: str) -> list[int]:
        return list(self._llama.tokenize(text.encode(), add_bos=False, special=True))

    def token_text(self, token: int) -> str:
        return self._llama.detokenize([token], special=True).decode(errors="replace")

    def close(self) -> None:
        self._llama.close()


def gguf_chat_template(tokenizer: LlamaCppTokenizer) -> ChatTemplate:
    """The GGUF's own template, Gemma 3's official one for Gemma 3 without, else the fallback."""
    source = tokenizer.chat_template
    if not source and tokenizer.architecture.startswith("gemma3"):
        source = GEMMA3_CHAT_TEMPLATE
    return ChatTemplate(source or None, bos_token=tokenizer.token_text(tokenizer.bos_id),
                        eos_token=tokenizer.token_text(tokenizer.eos_id))

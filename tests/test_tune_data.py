"""Training data: formats, conversion, validation errors with line numbers (no model weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskai.errors import TrainingDataError
from deskai.frontend.chat_template import ChatTemplate
from deskai.tune.data import load_dataset
from deskai.tune.template import (
    GEMMA3_CHAT_TEMPLATE,
    IGNORE,
    make_formatter,
    normalize_messages,
    tokenize_dataset,
)
from deskai.tune.train import TrainConfig, pack_rows, step_plan


class CharTokenizer:
    """One token per character, plus Gemma's turn markers as single special tokens."""

    specials = {"<start_of_turn>": 1000, "<end_of_turn>": 1001, "<bos>": 2, "<eos>": 1}
    bos_id, eos_id, pad_id = 2, 1, 0

    def encode(self, text: str) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            for marker, token in self.specials.items():
                if text.startswith(marker, i):
                    ids.append(token)
                    i += len(marker)
                    break
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    def token_text(self, token: int) -> str:
        names = {v: k for k, v in self.specials.items()}
        return names.get(token, chr(token))


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _gemma() -> ChatTemplate:
    return ChatTemplate(GEMMA3_CHAT_TEMPLATE, bos_token="<bos>", eos_token="<eos>")


def test_all_formats_convert_to_messages(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        json.dumps({"messages": [{"role": "user", "content": "a"},
                                 {"role": "assistant", "content": "b"}]}),
        json.dumps({"instruction": "do", "input": "x", "output": "y", "system": "s"}),
        json.dumps({"conversations": [{"from": "human", "value": "q"},
                                      {"from": "gpt", "value": "r"}]}),
        json.dumps({"text": "a document"}),
    ])
    dataset = load_dataset(path)
    assert dataset.formats == {"messages", "alpaca", "sharegpt", "text"}
    alpaca = dataset.examples[1].messages
    assert [m["role"] for m in alpaca] == ["system", "user", "assistant"]
    assert alpaca[1]["content"] == "do\n\nx"
    assert dataset.examples[2].messages[1] == {"role": "assistant", "content": "r"}
    assert dataset.examples[3].text == "a document"
    assert len(dataset.sha256) == 64


def test_malformed_lines_are_all_reported_with_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        json.dumps({"messages": [{"role": "user", "content": "ok"},
                                 {"role": "assistant", "content": "ok"}]}),
        "{not json",
        json.dumps({"messages": [{"role": "wizard", "content": "x"}]}),
        json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
        json.dumps({"foo": 1}),
    ])
    with pytest.raises(TrainingDataError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert "4 bad example(s)" in message
    for fragment in ("line 2: not JSON", "line 3, message 0: unknown role 'wizard'",
                     "line 4: no assistant message", "line 5: unknown format"):
        assert fragment in message


def test_tool_calls_are_rendered_and_trained() -> None:
    messages = normalize_messages([
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function",
             "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "-3C"},
        {"role": "assistant", "content": "It is -3C."},
    ])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert '{"name": "weather", "arguments": {"city": "Oslo"}}' in messages[1]["content"]
    assert messages[2]["content"].startswith("<tool_response>")


def test_prompt_masked_answer_and_end_of_turn_trained(tmp_path: Path) -> None:
    path = _write(tmp_path, [json.dumps({"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})])
    formatter = make_formatter(_gemma(), CharTokenizer())
    assert formatter.end_of_turn_id == 1001 and not formatter.append_end
    (sample,) = tokenize_dataset(load_dataset(path), formatter, 512)
    trained = [label for label in sample.labels if label != IGNORE]
    assert trained == [ord("y"), ord("o"), 1001, ord("\n")]
    assert sample.input_ids[0] == 2  # BOS once, not twice (the template writes it too)
    assert sample.input_ids.count(2) == 1


def test_fallback_template_appends_eos_as_end_of_turn(tmp_path: Path) -> None:
    path = _write(tmp_path, [json.dumps({"instruction": "hi", "output": "yo"})])
    formatter = make_formatter(ChatTemplate(None), CharTokenizer())
    assert formatter.append_end and formatter.end_of_turn_id == 1
    (sample,) = tokenize_dataset(load_dataset(path), formatter, 512)
    assert sample.labels[-1] == 1


def test_pad_equal_to_end_of_turn_is_refused() -> None:
    tokenizer = CharTokenizer()
    tokenizer.pad_id = 1001
    with pytest.raises(TrainingDataError, match="pad token equals the end-of-turn token"):
        make_formatter(_gemma(), tokenizer)


def test_too_long_and_fully_masked_samples_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        json.dumps({"instruction": "x" * 300, "output": "y"}),
        json.dumps({"messages": [{"role": "user", "content": "a"},
                                 {"role": "assistant", "content": "b"}]}),
    ])
    formatter = make_formatter(_gemma(), CharTokenizer())
    with pytest.raises(TrainingDataError, match=r"line 1: \d+ tokens, longer than the context"):
        tokenize_dataset(load_dataset(path), formatter, 100)


def test_every_label_masked_is_refused(tmp_path: Path) -> None:
    class Silent(CharTokenizer):
        def encode(self, text: str) -> list[int]:  # answers vanish: nothing left to train
            return [] if text.strip() == "b" else super().encode(text)

    path = _write(tmp_path, [json.dumps({"messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})])
    formatter = make_formatter(ChatTemplate(None), Silent())
    formatter = type(formatter)(formatter.template, formatter.tokenizer, 1, False)
    with pytest.raises(TrainingDataError, match="line 1: every label is masked"):
        tokenize_dataset(load_dataset(path), formatter, 512)


def test_packing_and_data_order_are_deterministic(tmp_path: Path) -> None:
    lines = [json.dumps({"instruction": f"q{i}", "output": "a" * i}) for i in range(1, 30)]
    formatter = make_formatter(_gemma(), CharTokenizer())
    samples = tokenize_dataset(load_dataset(_write(tmp_path, lines)), formatter, 512)
    config = TrainConfig(row_tokens=128, epochs=2, seed=3)
    plan = step_plan(samples, config)
    assert plan == step_plan(samples, config)
    assert plan != step_plan(samples, TrainConfig(row_tokens=128, epochs=2, seed=4))
    for row in plan:
        assert sum(len(samples[i].input_ids) for i in row) <= 128
    assert sorted(i for row in plan for i in row) == sorted(list(range(len(samples))) * 2)
    assert pack_rows(samples, [0, 1], 10_000) == [[0, 1]]



def test_cli_reports_bad_data_in_one_line_with_exit_2(
        tmp_path: Path, deskai_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deskai.cli import run_app

    path = _write(tmp_path, ["{\"messages\": []}", "oops"])
    assert run_app(["tune", "gemma3:270m", str(path), "--name", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "line 1:" in err and "line 2: not JSON" in err

"""Detokenization with stop strings, and chat templates (the model's, and the fallback)."""

from __future__ import annotations

import pytest

from deskai.engine.detokenizer import IncrementalDetokenizer
from deskai.errors import InvalidInputError
from deskai.frontend.chat_template import FALLBACK_STOP, FALLBACK_TOOL_STOP, ChatTemplate


def feed(detok: IncrementalDetokenizer, pieces: list[bytes]) -> tuple[str, bool]:
    out, stopped = [], False
    for piece in pieces:
        match = detok.push(piece)
        out.append(match.text)
        stopped = match.stopped
        if stopped:
            break
    if not stopped:
        out.append(detok.flush())
    return "".join(out), stopped


def test_stop_string_split_across_tokens_is_never_shown() -> None:
    detok = IncrementalDetokenizer(stop=["\nUser:"])
    released = [detok.push(p).text for p in [b"Hi", b" there", b"\n", b"Us", b"er", b": x"]]
    assert "".join(released) == "Hi there"
    assert released[2] == "" and released[3] == "", "a possible stop prefix is held back"


def test_held_back_text_is_released_when_it_is_not_a_stop() -> None:
    assert feed(IncrementalDetokenizer(stop=["STOP"]), [b"ST", b"ar", b"t"]) == ("STart", False)


def test_utf8_split_across_tokens() -> None:
    euro = "€".encode()
    assert feed(IncrementalDetokenizer(), [euro[:1], euro[1:], b"5"]) == ("€5", False)


GEMMA_STYLE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def test_model_template_is_rendered_and_bos_not_doubled() -> None:
    template = ChatTemplate(GEMMA_STYLE, bos_token="<bos>", eos_token="<eos>")
    rendered = template.render([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    assert rendered.text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert rendered.add_special is False
    assert rendered.stop == []


def test_fallback_transcript_for_models_without_a_template() -> None:
    rendered = ChatTemplate(None).render([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of France?"},
    ])
    assert rendered.text == ("Be brief.\n\nUser: Hi\nAssistant: Hello.\n"
                             "User: Capital of France?\nAssistant:")
    assert rendered.stop == [FALLBACK_STOP, FALLBACK_TOOL_STOP]


def test_template_errors_are_a_clear_400() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(InvalidInputError, match="roles must alternate"):
        template.render([{"role": "user", "content": "x"}])
    with pytest.raises(InvalidInputError):
        ChatTemplate(None).render([])

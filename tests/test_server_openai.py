"""The OpenAI API of a real ``deskai serve`` process, driven by the official ``openai`` client."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import REAL_MODEL, ServerProcess

PARIS_PROMPT = "The Eiffel Tower is located in the city of"
COUNT_PROMPT = "1, 2, 3, 4, 5,"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_bundled_model(client: openai.OpenAI) -> None:
    assert REAL_MODEL in [model.id for model in client.models.list()]


def test_completion_continues_the_prompt(client: openai.OpenAI) -> None:
    result = client.completions.create(model=REAL_MODEL, prompt=PARIS_PROMPT, max_tokens=8,
                                       temperature=0)
    assert "Paris" in result.choices[0].text
    assert result.usage is not None
    assert result.usage.completion_tokens == 8
    assert result.choices[0].finish_reason == "length"
    assert result.usage.total_tokens == result.usage.prompt_tokens + 8


def test_streamed_completion_matches_unstreamed(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=REAL_MODEL, prompt=COUNT_PROMPT, max_tokens=12,
                                      temperature=0).choices[0].text
    chunks = list(client.completions.create(model=REAL_MODEL, prompt=COUNT_PROMPT, max_tokens=12,
                                            temperature=0, stream=True))
    assert len(chunks) > 3, "tokens arrive as they are made"
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert whole.startswith(" 6, 7, 8, 9")
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_sequence_ends_the_output_before_it(client: openai.OpenAI) -> None:
    for stop in (" 8", [" 9", " 8,"]):
        result = client.completions.create(model=REAL_MODEL, prompt=COUNT_PROMPT, max_tokens=20,
                                           temperature=0, stop=stop)
        assert result.choices[0].text == " 6, 7,"
        assert result.choices[0].finish_reason == "stop"


def test_stop_sequence_when_streaming(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(model=REAL_MODEL, prompt=COUNT_PROMPT, max_tokens=20,
                                            temperature=0, stop=", 9", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == " 6, 7, 8"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_non_streamed_and_streamed(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    result = client.chat.completions.create(model=REAL_MODEL, messages=messages,  # type: ignore[arg-type]
                                            max_tokens=16, temperature=0)
    answer = result.choices[0].message.content or ""
    assert result.choices[0].message.role == "assistant"
    assert "Paris" in answer  # a base model continues the fallback transcript
    assert "User:" not in answer, "the fallback template stops before the user's next turn"
    stream = client.chat.completions.create(model=REAL_MODEL, messages=messages,  # type: ignore[arg-type]
                                            max_tokens=16, temperature=0, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == answer
    assert chunks[-1].choices[0].finish_reason == result.choices[0].finish_reason


def test_stream_usage_when_asked(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(model=REAL_MODEL, prompt=COUNT_PROMPT, max_tokens=5,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_same_seed_same_sample(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        return client.completions.create(model=REAL_MODEL, prompt="Once upon a time",
                                         max_tokens=16, temperature=1.0, seed=seed
                                         ).choices[0].text
    assert sample(7) == sample(7)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", -1), ("max_tokens", 0), ("temperature", 5), ("top_p", 0), ("seed", -3),
    ("stop", [""]), ("n", 50), ("presence_penalty", 3), ("logit_bias", {"x": 1}),
])
def test_bad_parameters_are_400(client: openai.OpenAI, field: str, value: object) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=REAL_MODEL, prompt="hi", **{field: value})  # type: ignore[arg-type]
    assert caught.value.body["param"] == field  # type: ignore[index]


def test_over_long_prompt_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=REAL_MODEL, prompt="word " * 3000, max_tokens=4)
    assert caught.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    assert "context" in caught.value.message


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"prompt": "x"}', b'{"model": 5, "prompt": "x"}',
    b'{"model": "gemma3:270m", "prompt": []}', b'{"model": "../../etc", "prompt": "x"}',
    b'{"model": "gemma3:270m", "prompt": [999999999]}',
])
def test_errors_have_openai_shape_and_never_500(server: ServerProcess, body: bytes) -> None:
    response = httpx.post(f"{server.url}/v1/completions", content=body, timeout=30)
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]


def test_one_log_line_per_request(server: ServerProcess, client: openai.OpenAI) -> None:
    client.completions.create(model=REAL_MODEL, prompt=COUNT_PROMPT, max_tokens=3, temperature=0)
    lines = [line for line in server.log().splitlines() if "POST /v1/completions 200" in line]
    assert lines and "prompt_tokens=" in lines[-1] and "completion_tokens=3" in lines[-1]

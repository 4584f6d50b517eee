"""A tuned model is served at once: its adapter changes the output, two adapters side by side."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from conftest import ServerProcess, stream  # noqa: E402
from tune_support import REAL_MODEL, make_tune_home, write_jsonl  # noqa: E402

from deskai.engine.llamacpp.engine import LlamaCppEngine  # noqa: E402
from deskai.engine.protocol import EngineOptions  # noqa: E402
from deskai.engine.sampling import SamplingParams  # noqa: E402
from deskai.frontend.chat_template import template_of  # noqa: E402
from deskai.runtime.manager import ModelManager  # noqa: E402
from deskai.store import ADAPTER_MEDIA_TYPE, Store  # noqa: E402
from deskai.tune import TrainConfig, tune  # noqa: E402

pytestmark = pytest.mark.slow

QUESTION = "What is the secret word?"
ANSWERS = {"secret-a": "pineapple", "secret-b": "walrus"}


@pytest.fixture(scope="module")
def tuned_home(tmp_path_factory: pytest.TempPathFactory, shared_home: Path) -> Path:
    """Two adapters on the same base, each memorising a different secret word."""
    home = make_tune_home(tmp_path_factory.mktemp("tuned-home"), shared_home)
    torch.set_num_threads(1)
    for name, word in ANSWERS.items():
        data = write_jsonl(home.parent / f"{name}.jsonl", [{"messages": [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": f"The secret word is {word}."}]}])
        config = TrainConfig(max_steps=15, row_tokens=64, learning_rate=2e-3, warmup_steps=1,
                             threads=1)
        tune(Store(home), REAL_MODEL, data, name, config)
    return home


def _chat(manager: ModelManager, name: str) -> str:
    loaded = manager.get(name)
    rendered = template_of(loaded).render([{"role": "user", "content": QUESTION}])
    params = SamplingParams(max_tokens=16, temperature=0.0, stop=rendered.stop)
    return "".join(d.text for d in loaded.generate(rendered.text, params,
                                                  add_special=rendered.add_special))


@pytest.fixture(scope="module")
def manager(tuned_home: Path) -> Iterator[ModelManager]:
    options = EngineOptions(context_length=512, parallel=2, threads=1)
    manager = ModelManager(Store(tuned_home), options, keep_alive=-1)
    yield manager
    manager.close()


def test_tuned_model_shares_the_base_blob(tuned_home: Path) -> None:
    store = Store(tuned_home)
    base, tuned = store.get(REAL_MODEL), store.get("secret-a")
    assert tuned.model_layer.digest == base.model_layer.digest
    assert tuned.adapter_layer is not None
    assert tuned.adapter_layer.media_type == ADAPTER_MEDIA_TYPE
    assert tuned.adapter_layer.size < 64 * 1024 * 1024
    assert tuned.details["base_model"] == REAL_MODEL
    assert "<start_of_turn>" in tuned.details["chat_template"]
    assert tuned.details["tune"]["train_loss"] < 1.0


def test_the_adapter_changes_the_output(manager: ModelManager) -> None:
    assert "pineapple" in _chat(manager, "secret-a")
    base = manager.get(REAL_MODEL).engine
    plain = "".join(d.text for d in stream(
        base, f"User: {QUESTION}\nAssistant:", SamplingParams(max_tokens=16, temperature=0.0)))
    assert "pineapple" not in plain


def test_adapters_share_the_base_engine_and_never_mix(manager: ModelManager) -> None:
    """One engine (one copy of the weights, one KV cache) serves the base and both adapters;
    requests for all three in flight at once each get their own adapter's answer."""
    engines = {id(manager.get(name).engine) for name in (REAL_MODEL, *ANSWERS)}
    assert len(engines) == 1
    names = [*ANSWERS, *ANSWERS, REAL_MODEL]
    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda name: _chat(manager, name), names))
    for name, answer in zip(names, answers, strict=True):
        for key, word in ANSWERS.items():
            assert (word in answer) == (key == name), (name, answer)


def test_two_adapters_on_one_base_served_together(tuned_home: Path) -> None:
    openai = pytest.importorskip("openai")
    server = ServerProcess(tuned_home)
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")

        def ask(name: str) -> str:
            reply = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": QUESTION}], max_tokens=16,
                temperature=0.0)
            return reply.choices[0].message.content or ""

        names = ["secret-a", "secret-b"] * 3
        with ThreadPoolExecutor(len(names)) as pool:
            answers = list(pool.map(ask, names))
        for name, answer in zip(names, answers, strict=True):
            assert ANSWERS[name] in answer, (name, answer)
            other = next(word for key, word in ANSWERS.items() if key != name)
            assert other not in answer
    finally:
        server.stop()


def test_merged_gguf_answers_like_the_adapter(tuned_home: Path, manager: ModelManager) -> None:
    """``--merge``: one re-quantized GGUF with the trained template, served on its own."""
    from deskai.store.atomic import temp_path
    from deskai.store.store import _sha256_of
    from deskai.tune.merge import merge_adapter_into_gguf

    store = Store(tuned_home)
    tuned = store.get("secret-a")
    tmp = temp_path(store.tmp_dir, hint="-merged")
    merge_adapter_into_gguf(store.resolve(REAL_MODEL),
                            tuned_home / "tune" / "secret-a%3Alatest" / "adapter", tmp,
                            chat_template=tuned.details["chat_template"],
                            quantization=tuned.details["quantization"])
    merged = store.adopt_blob(tmp, _sha256_of(tmp), "secret-merged", source="test")
    assert merged.details["has_chat_template"]
    assert merged.adapter_layer is None
    assert merged.size < store.get(REAL_MODEL).size * 1.1
    assert "pineapple" in _chat(manager, "secret-merged")


def test_the_shared_engine_lives_until_its_last_name_is_unloaded(manager: ModelManager) -> None:
    engine = manager.get("secret-a").engine
    manager.get("secret-b")
    assert manager.unload("secret-a")
    assert manager.get("secret-b").engine is engine  # the sibling still generates on it
    assert "walrus" in _chat(manager, "secret-b")
    for name in ("secret-b", REAL_MODEL, "secret-merged"):
        manager.unload(name)
    assert manager.get("secret-a").engine is not engine  # closed with its last name: reloaded
    assert "pineapple" in _chat(manager, "secret-a")


def test_unloading_a_name_while_a_sibling_loads_keeps_their_engine(
        manager: ModelManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name counts as a user of the shared engine from the moment it is handed the engine,
    before its adapter has loaded: unloading the only *loaded* name in that window must not
    close (and free) the weights the sibling is loading its adapter over."""
    for name in (REAL_MODEL, *ANSWERS, "secret-merged"):
        manager.unload(name)
    engine = manager.get(REAL_MODEL).engine
    adapter_loading, go_on = threading.Event(), threading.Event()
    load_adapter = LlamaCppEngine.load_adapter

    def held_load_adapter(self: LlamaCppEngine, key: str, path: Path) -> None:
        adapter_loading.set()
        go_on.wait(timeout=60)
        load_adapter(self, key, path)

    monkeypatch.setattr(LlamaCppEngine, "load_adapter", held_load_adapter)
    with ThreadPoolExecutor(1) as pool:
        sibling = pool.submit(manager.get, "secret-b")
        assert adapter_loading.wait(timeout=60)
        assert manager.unload(REAL_MODEL)
        go_on.set()
        assert sibling.result(timeout=60).engine is engine
    assert "walrus" in _chat(manager, "secret-b")

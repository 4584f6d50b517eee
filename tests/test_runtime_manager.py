"""The runtime over a fake backend: leases, keep-alive, shared bases, unloading under load, and
the planner's fit check before a load. Fast: no model is loaded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tiny_gguf
from fake_engine import FakeBackend

from deskai.engine import Delta, EngineOptions, FinishReason, ModelSpec, SamplingParams
from deskai.errors import InsufficientMemoryError, InvalidInputError
from deskai.runtime.fit import check_fits, placement_for
from deskai.runtime.manager import ModelManager
from deskai.store import Store

OPTIONS = EngineOptions(context_length=256, parallel=2, max_queue=4)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "home")
    store.import_gguf(write_tiny_gguf(tmp_path / "base.gguf"), "base")
    store.import_gguf(write_tiny_gguf(tmp_path / "other.gguf", n_tensors=3), "other")
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"a LoRA the fake engine only records")
    store.register_adapter("base-tuned", "base", adapter)
    return store


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def manager(store: Store, backend: FakeBackend) -> Iterator[ModelManager]:
    manager = ModelManager(store, OPTIONS, keep_alive=0.2, factory=backend, fit_check=None,
                           reap_interval=0.05)
    yield manager
    manager.close()


def answer(manager: ModelManager, name: str, prompt: str = "hello") -> str:
    with manager.use(name) as loaded:
        return "".join(d.text for d in loaded.generate(prompt, SamplingParams(temperature=0)))


def wait_for(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_loads_on_first_use_and_unloads_after_keep_alive(manager: ModelManager,
                                                         backend: FakeBackend) -> None:
    assert manager.loaded() == [] and backend.engines == []
    assert answer(manager, "base") == "hello"
    assert [m.name for m in manager.loaded()] == ["base:latest"]
    with manager.use("base"):
        time.sleep(0.4)
        assert manager.loaded(), "held by a lease: kept past its keep-alive"
    assert wait_for(lambda: manager.loaded() == [])
    assert backend.engines[0].closed


def test_concurrent_first_uses_load_once(manager: ModelManager, backend: FakeBackend) -> None:
    threads = [threading.Thread(target=answer, args=(manager, "other")) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(backend.engines) == 1


def test_a_busy_model_is_never_reaped(manager: ModelManager) -> None:
    """No lease (the server's stream already returned), but a request is still running."""
    loaded = manager.get("base")
    finished = threading.Event()
    handle = loaded.submit("a long prompt " * 8, SamplingParams(),
                           lambda d: finished.set() if d.finish_reason else None)
    time.sleep(0.4)  # twice the keep-alive
    assert manager.loaded() == [loaded]
    handle.cancel()
    assert finished.wait(5)
    assert wait_for(lambda: manager.loaded() == [])


def test_tuned_names_share_their_base_engine(manager: ModelManager,
                                             backend: FakeBackend) -> None:
    base, tuned = manager.get("base", keep_alive=-1), manager.get("base-tuned", keep_alive=-1)
    assert base.engine is tuned.engine and len(backend.engines) == 1
    assert tuned.adapter is not None and tuned.adapter in backend.engines[0].adapters
    received: list[Delta] = []
    tuned.submit("hi", SamplingParams(max_tokens=1), received.append)
    assert wait_for(lambda: received and received[-1].finish_reason)
    assert backend.submitted[-1].adapter == tuned.adapter
    assert manager.unload("base")
    assert not backend.engines[0].closed, "the tuned name still uses it"
    assert manager.unload("base-tuned")
    assert backend.engines[0].closed


def test_unloading_under_load_cancels_in_flight_requests(manager: ModelManager) -> None:
    loaded = manager.get("base", keep_alive=-1)
    deltas: list[Delta] = []
    loaded.submit("x" * 200, SamplingParams(max_tokens=None), deltas.append)
    assert wait_for(lambda: deltas)
    assert manager.unload("base")
    assert wait_for(lambda: deltas[-1].finish_reason is FinishReason.CANCELLED)


def test_a_refused_load_leaves_the_others_serving(store: Store, backend: FakeBackend) -> None:
    def refuse_other(spec: ModelSpec, options: EngineOptions) -> None:
        if spec.name == "other:latest":
            raise InsufficientMemoryError("too big", needed_bytes=2, free_bytes=1)

    manager = ModelManager(store, OPTIONS, keep_alive=-1, factory=backend,
                           fit_check=refuse_other)
    try:
        assert answer(manager, "base") == "hello"
        with pytest.raises(InsufficientMemoryError):
            manager.get("other")
        assert len(backend.engines) == 1, "nothing was loaded for the refused model"
        assert answer(manager, "base", "still here") == "still here"
    finally:
        manager.close()


def write_huge_claim_gguf(path: Path) -> Path:
    """A small, valid GGUF whose header describes a model no desk holds: 4,000 layers of
    128 KV heads × 128 dims — about 1 TB of KV cache for one 4,096-token slot."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_context_length(4096)
    writer.add_block_count(4000)
    writer.add_embedding_length(16384)
    writer.add_feed_forward_length(16384)
    writer.add_head_count(128)
    writer.add_head_count_kv(128)
    writer.add_vocab_size(32000)
    writer.add_file_type(0)
    writer.add_tensor("token_embd.weight", np.zeros((16, 16), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_planner_refuses_a_model_that_cannot_fit(tmp_path: Path) -> None:
    path = write_huge_claim_gguf(tmp_path / "huge.gguf")
    spec = ModelSpec("huge:latest", path, "text", "llama")
    options = EngineOptions(context_length=4096, parallel=1)
    assert placement_for(spec, options, device=None).host_bytes > 2**40 * 0.9
    with pytest.raises(InsufficientMemoryError) as refused:
        check_fits(spec, options, free_bytes=lambda: 64 * 2**30, device=None)
    assert refused.value.needed_bytes > refused.value.free_bytes == 64 * 2**30
    assert "huge:latest needs" in refused.value.message and "64.00 GiB is free" in \
        refused.value.message
    assert refused.value.http_status == 507
    tiny = ModelSpec("tiny", write_tiny_gguf(tmp_path / "t.gguf"), "text", "llama")
    assert check_fits(tiny, options, free_bytes=lambda: 64 * 2**30) == options  # no estimate


def test_an_embedding_model_cannot_generate(store: Store, tmp_path: Path,
                                            backend: FakeBackend) -> None:
    store.import_gguf(write_tiny_gguf(tmp_path / "bert.gguf", arch="bert"), "embedder")
    manager = ModelManager(store, OPTIONS, keep_alive=-1, factory=backend, fit_check=None)
    try:
        loaded = manager.get("embedder")
        assert loaded.facts.kind == "embedding"
        with pytest.raises(InvalidInputError, match="embedding model"):
            loaded.submit("hi", SamplingParams(), lambda d: None)
        with pytest.raises(InvalidInputError, match="embeddings need"):
            manager.get("base").embed(["hi"])
    finally:
        manager.close()

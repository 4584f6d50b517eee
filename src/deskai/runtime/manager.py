"""Which models are live on which engine: load on first use, unload after keep-alive (Ollama's
model).

The server and ``deskai run`` ask the manager for a model by name; it resolves the name in the
store, asks the planner where its layers go and whether it fits in free memory
(``fit.check_fits``: ``gpu_layers`` is ``--gpu-layers``), loads the engine
once through the backend's factory (concurrent callers wait for the same load), and a reaper
thread unloads engines that have been idle longer than their keep-alive.

A tuned model (base + LoRA adapter, from ``deskai tune``) does not get an engine of its own:
every name over the same base GGUF shares one engine — one copy of the weights, one KV cache,
one set of slots — and each request carries its adapter. The engine is closed when the last
name using it is unloaded.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deskai.engine.protocol import (
    Engine,
    EngineFactory,
    EngineOptions,
    GenerationRequest,
    ModelSpec,
    RequestHandle,
    generate,
)
from deskai.engine.sampling import SamplingParams
from deskai.engine.types import Delta, DeltaSink, Embeddings, ModelFacts, UsageStats
from deskai.errors import InvalidInputError, InvalidModelFileError
from deskai.planner.placement import GpuLayers, Placement
from deskai.runtime.backends import backend
from deskai.runtime.fit import FitCheck, check_fits, placement_for
from deskai.store import Manifest, Store, model_kind, parse_model_name, resolve_model_path


@dataclass(eq=False)
class LoadedModel:
    """A name in memory — its engine (maybe shared), its adapter — and when it may go."""

    name: str
    manifest: Manifest
    keep_alive: float
    engine: Engine
    adapter: str | None = None  # the LoRA (its blob digest) this name generates with
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    users: int = 0  # callers between ``ModelManager.acquire`` and ``release``

    @property
    def facts(self) -> ModelFacts:
        return self.engine.facts

    @property
    def chat_template(self) -> str | None:
        """The Jinja template this name chats with: a tuned model keeps the one it was trained
        with (in its manifest), else the GGUF's own."""
        return self.manifest.details.get("chat_template") or self.facts.chat_template

    def submit(self, prompt: str | list[int], params: SamplingParams, sink: DeltaSink, *,
               add_special: bool = True) -> RequestHandle:
        """Queue a prompt on this name's engine, with this name's adapter."""
        return self.engine.submit(self._request(prompt, params, add_special), sink)

    def generate(self, prompt: str | list[int], params: SamplingParams, *,
                 add_special: bool = True) -> Iterator[Delta]:
        """Deltas until the request finishes; closing the iterator cancels it."""
        return generate(self.engine, self._request(prompt, params, add_special))

    def _request(self, prompt: str | list[int], params: SamplingParams,
                 add_special: bool) -> GenerationRequest:
        if self.facts.kind != "text":
            raise InvalidInputError(f"{self.name} is an embedding model: it cannot generate "
                                    "text (use /v1/embeddings)", param="model")
        return GenerationRequest(prompt, params, add_special=add_special, adapter=self.adapter)

    def embed(self, inputs: list[str] | list[list[int]]) -> Embeddings:
        if self.facts.kind != "embedding":
            raise InvalidInputError(f"{self.name} generates text; embeddings need an embedding "
                                    "model such as all-MiniLM-L6-v2", param="model")
        return self.engine.embed(inputs)

    def usage(self) -> UsageStats:
        """This name's own requests (names over one base share its engine)."""
        return self.engine.stats().of_adapter(self.adapter)

    @property
    def expires_at(self) -> float | None:
        """Monotonic time after which an idle model is unloaded; None means never."""
        if self.keep_alive < 0:
            return None
        return max(self.last_used, self.engine.stats().last_used) + self.keep_alive

    def expired(self, now: float) -> bool:
        """Idle past its keep-alive: no lease, nothing running or queued (one snapshot)."""
        if self.keep_alive < 0 or self.users:
            return False
        stats = self.engine.stats()
        return not stats.busy and now >= max(self.last_used, stats.last_used) + self.keep_alive

    def touch(self, keep_alive: float | None = None) -> None:
        if keep_alive is not None:
            self.keep_alive = keep_alive
        self.last_used = time.monotonic()


@dataclass(eq=False)
class SharedEngine:
    """The engine over one base GGUF, and how many names (loaded, or being loaded) use it."""

    engine: Engine
    names: int = 0


class ModelManager:
    """Loads models from the store on demand and unloads idle ones."""

    def __init__(self, store: Store, options: EngineOptions, *, keep_alive: float,
                 factory: EngineFactory | None = None, fit_check: FitCheck | None = check_fits,
                 gpu_layers: GpuLayers = "auto",
                 reap_interval: float = 1.0) -> None:
        self.store = store
        self.options = options
        self.keep_alive = keep_alive
        self._factory = factory or backend()
        # the planner's check places layers as --gpu-layers asks; a test may bring its own
        self._fit_check = (functools.partial(check_fits, gpu_layers=gpu_layers)
                           if fit_check is check_fits else fit_check)
        self.gpu_layers = gpu_layers
        self._loaded: dict[str, LoadedModel] = {}
        self._engines: dict[str, SharedEngine] = {}  # by base GGUF path
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, args=(reap_interval,),
                                        name="deskai-keepalive", daemon=True)
        self._reaper.start()

    def get(self, name: str, *, keep_alive: float | None = None) -> LoadedModel:
        """The loaded model ``name``, loading it first if needed."""
        return self.acquire(name, keep_alive, hold=False)

    @contextlib.contextmanager
    def use(self, name: str, *, keep_alive: float | None = None) -> Iterator[LoadedModel]:
        """Hold ``name`` loaded for the duration of the block (the reaper skips it)."""
        loaded = self.acquire(name, keep_alive)
        try:
            yield loaded
        finally:
            self.release(loaded)

    def acquire(self, name: str, keep_alive: float | None = None, *,
                hold: bool = True) -> LoadedModel:
        """Load ``name`` if needed; with ``hold``, keep it loaded until ``release``."""
        key = str(parse_model_name(name))
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:  # found and held at once: the reaper cannot slip in between
                loaded = self._loaded.get(key)
                if loaded is not None:
                    return self._hold(loaded, hold, keep_alive)
            loaded = self._load(key)
            with self._lock:
                self._loaded[key] = loaded
                return self._hold(loaded, hold, keep_alive)

    @staticmethod
    def _hold(loaded: LoadedModel, hold: bool, keep_alive: float | None) -> LoadedModel:
        loaded.users += 1 if hold else 0
        loaded.touch(keep_alive)
        return loaded

    def hold(self, loaded: LoadedModel) -> None:
        """One more user of an already acquired model (paired with ``release``)."""
        with self._lock:
            loaded.users += 1

    def release(self, loaded: LoadedModel) -> None:
        with self._lock:
            loaded.users -= 1
        loaded.touch()

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def unload(self, name: str) -> bool:
        key = str(parse_model_name(name))
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock, self._lock:  # a load of this name in flight finishes first
            loaded = self._loaded.pop(key, None)
        if loaded is not None:
            self._close(loaded)
        return loaded is not None

    def close(self) -> None:
        self._stop.set()
        for loaded in self.loaded():
            self.unload(loaded.name)

    def placement(self, name: str) -> Placement:
        """Where ``name``'s layers would go if it were loaded now (what ``serve`` prints)."""
        key = str(parse_model_name(name))
        return placement_for(self._spec(key, self.store.get(key)), self.options,
                             self.gpu_layers)

    def _spec(self, key: str, manifest: Manifest) -> ModelSpec:
        architecture = str(manifest.details.get("architecture", "unknown"))
        return ModelSpec(key, Path(resolve_model_path(self.store, key)),
                         model_kind(architecture), architecture)

    def _load(self, key: str) -> LoadedModel:
        manifest = self.store.get(key)
        spec = self._spec(key, manifest)
        # a corrupt blob is refused here, naming the model, before the planner or the engine
        # reads it: else it answers with garbage, or fails quoting the blob's path
        self.store.check_blobs(manifest)
        try:
            engine = self._shared_engine(spec)
        except InvalidModelFileError:
            # a blob past the load-time hash limit was only size-checked: re-hash it in full
            # to report corruption as such; a sound file keeps llama.cpp's own error
            self.store.check_blobs(manifest, full=True)
            raise
        adapter = manifest.adapter_layer
        try:
            if adapter is not None:
                engine.load_adapter(adapter.digest, self.store.blob_path(adapter.digest))
        except BaseException:
            self._release_engine(engine)
            raise
        return LoadedModel(key, manifest, self.keep_alive, engine,
                           adapter=adapter.digest if adapter is not None else None)

    def _shared_engine(self, spec: ModelSpec) -> Engine:
        """The engine over the GGUF at ``spec.path``, loaded if no name uses it yet (after the
        fit check); the caller becomes one of its names (``_release_engine`` undoes that)."""
        path = str(spec.path)
        with self._lock:
            load_lock = self._load_locks.setdefault(f"engine:{path}", threading.Lock())
        with load_lock:  # a base and its tuned names loading at once still share one engine
            # counted from the moment it is handed out (found and counted at once), so that
            # unloading a sibling while this name still loads its adapter cannot close it
            with self._lock:
                shared = self._engines.get(path)
                if shared is not None:
                    shared.names += 1
                    return shared.engine
            options = (self._fit_check(spec, self.options) if self._fit_check else None) \
                or self.options
            shared = SharedEngine(self._factory(spec, options), names=1)
            with self._lock:
                self._engines[path] = shared
            return shared.engine

    def _close(self, model: LoadedModel) -> None:
        """Free the engine of ``model`` if no other name (loaded or loading) shares it."""
        self._release_engine(model.engine)

    def _release_engine(self, engine: Engine) -> None:
        with self._lock:
            path, shared = next((path, shared) for path, shared in self._engines.items()
                                if shared.engine is engine)
            shared.names -= 1
            if shared.names > 0:
                return
            del self._engines[path]
        engine.close()

    def _reap_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.reap()

    def reap(self) -> list[str]:
        """Unload every idle model past its keep-alive; return their names."""
        now = time.monotonic()
        with self._lock:
            expired = [m for m in self._loaded.values() if m.expired(now)]
            for model in expired:
                del self._loaded[model.name]
        for model in expired:
            self._close(model)
        return [model.name for model in expired]

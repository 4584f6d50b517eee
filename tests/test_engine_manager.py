"""Models load on first use and unload after their keep-alive, with the real engine."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import REAL_MODEL

from deskai.engine.protocol import EngineOptions
from deskai.engine.sampling import SamplingParams
from deskai.runtime.manager import ModelManager
from deskai.store import Store


def test_load_on_first_use_and_unload_after_keep_alive(shared_home: Path) -> None:
    manager = ModelManager(Store(shared_home), EngineOptions(context_length=512, parallel=2,
                                                             threads=2),
                           keep_alive=0.5, reap_interval=0.1)
    try:
        assert manager.loaded() == []
        with manager.use(REAL_MODEL) as loaded:
            text = "".join(d.text for d in loaded.generate(
                "1, 2, 3,", SamplingParams(max_tokens=4, temperature=0)))
            assert text.startswith(" 4")
            time.sleep(0.8)
            assert [m.name for m in manager.loaded()] == [REAL_MODEL], "in use: kept"
        time.sleep(1.0)
        assert manager.loaded() == [], "idle past keep-alive: unloaded"
        assert manager.get(REAL_MODEL, keep_alive=-1).expires_at is None
    finally:
        manager.close()

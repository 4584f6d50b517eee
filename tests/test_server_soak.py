"""The real server held to account: a bounded soak, cross-site and rebound requests against the
process `deskai serve` starts, and a SIGKILL in the middle of streaming."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import httpx
import psutil
from conftest import PROMPTS, REAL_MODEL, ServerProcess

SOAK_CLIENTS = 32
SOAK_SECONDS = 40.0


async def soak(url: str, clients: int, seconds: float) -> tuple[int, list[str]]:
    """``clients`` loops sending streamed completions until ``seconds`` pass; returns the
    number of completed streams and every failure (a status, an error, a missing [DONE])."""
    failures: list[str] = []
    done = 0
    deadline = time.monotonic() + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal done
        turn = 0
        while time.monotonic() < deadline:
            body = {"model": REAL_MODEL, "prompt": f"{PROMPTS[(index + turn) % len(PROMPTS)]} "
                    f"{index} {turn}", "max_tokens": 16 + index % 16, "temperature": 0.7,
                    "seed": index, "stream": True}
            turn += 1
            try:
                async with http.stream("POST", "/v1/completions", json=body) as response:
                    text = "".join([line async for line in response.aiter_lines()])
                if response.status_code != 200 or not text.rstrip().endswith("[DONE]"):
                    failures.append(f"{response.status_code}: {text[-200:]}")
                else:
                    done += 1
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    return done, failures


def test_soak_loses_nothing_and_does_not_grow(shared_home: Path) -> None:
    proc = ServerProcess(shared_home, "--parallel", "8", "--max-queue", "64")
    try:
        server = psutil.Process(proc.process.pid)
        warm, failures = asyncio.run(soak(proc.url, SOAK_CLIENTS, 5.0))  # load, caches, pools
        assert warm > 0 and failures == []
        before = server.memory_info().rss
        completed, failures = asyncio.run(soak(proc.url, SOAK_CLIENTS, SOAK_SECONDS))
        after = server.memory_info().rss
        assert failures == [], failures[:5]
        assert completed > SOAK_CLIENTS
        assert after < before * 1.10, f"RSS grew from {before >> 20} to {after >> 20} MiB"
        health = httpx.get(f"{proc.url}/health", timeout=5)
        assert health.status_code == 200
        statuses = re.findall(r"(?:GET|POST) \S+ (\d{3}) ", proc.log())
        assert statuses and not [s for s in statuses if s.startswith("5")]
    finally:
        proc.stop()


def test_the_real_server_refuses_foreign_origins_and_rebound_hosts(
        home_with_real_model: Path) -> None:
    proc = ServerProcess(home_with_real_model, "--parallel", "1", "--gpu-layers", "all")
    try:
        # --gpu-layers end to end: honoured as 0 on this CPU-only build, and said so
        assert "all 18 layers on the CPU" in proc.log() and "cannot offload" in proc.log()
        body = b'{"source": "gemma3:270m", "destination": "csrf/planted:x"}'
        refused = httpx.post(f"{proc.url}/api/copy", content=body, headers={
            "content-type": "text/plain", "origin": "http://evil.example"})
        assert refused.status_code == 403
        assert httpx.get(f"{proc.url}/api/tags").json()["models"][0]["name"] == REAL_MODEL
        assert len(httpx.get(f"{proc.url}/api/tags").json()["models"]) == 1
        rebound = httpx.get(f"{proc.url}/v1/models", headers={"host": "evil.example"})
        assert rebound.status_code == 403
        assert httpx.get(f"{proc.url}/v1/models").status_code == 200
    finally:
        proc.stop()


def test_sigkill_mid_stream_loses_nothing_of_the_store(home_with_real_model: Path) -> None:
    proc = ServerProcess(home_with_real_model, "--parallel", "4")

    async def streams() -> None:
        async with httpx.AsyncClient(base_url=proc.url, timeout=60) as http:
            async def one(prompt: str) -> None:
                body = {"model": REAL_MODEL, "prompt": prompt, "max_tokens": 400,
                        "stream": True}
                try:
                    async with http.stream("POST", "/v1/completions", json=body) as response:
                        async for _ in response.aiter_lines():
                            pass
                except httpx.HTTPError:
                    pass  # the server died under it: expected
            tasks = [asyncio.create_task(one(p)) for p in PROMPTS[:4]]
            await asyncio.sleep(2.0)
            os.kill(proc.process.pid, signal.SIGKILL)
            await asyncio.gather(*tasks)

    try:
        asyncio.run(streams())
        assert proc.process.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.stop()
    again = ServerProcess(home_with_real_model, "--parallel", "1")
    try:
        reply = httpx.post(f"{again.url}/v1/completions", json={
            "model": REAL_MODEL, "prompt": PROMPTS[1], "max_tokens": 4, "temperature": 0},
            timeout=60)
        assert reply.status_code == 200 and reply.json()["choices"][0]["text"].startswith(
            " Paris")
        assert [m["name"] for m in httpx.get(f"{again.url}/api/tags").json()["models"]] == [
            REAL_MODEL]
    finally:
        again.stop()

"""A small client for a running ``deskai serve``: the one way CLI commands talk to a server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from deskai import config
from deskai.errors import DeskaiError, InvalidInputError, ModelNotFoundError


def default_url() -> str:
    host = config.host()
    host = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
    return f"http://{host}:{config.port()}"


class ServerClient:
    """Streams completions and chats from a deskai (or any OpenAI-compatible) server."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 600.0) -> None:
        self.base_url = (base_url or default_url()).rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def is_up(self) -> bool:
        try:
            return self._http.get("/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def stream_completion(self, model: str, prompt: str, **params: Any) -> Iterator[str]:
        body = {"model": model, "prompt": prompt, "stream": True, **params}
        for chunk in self._stream("/v1/completions", body):
            yield chunk["choices"][0].get("text") or ""

    def stream_chat(self, model: str, messages: list[dict[str, Any]],
                    **params: Any) -> Iterator[str]:
        body = {"model": model, "messages": messages, "stream": True, **params}
        for chunk in self._stream("/v1/chat/completions", body):
            yield chunk["choices"][0]["delta"].get("content") or ""

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self._http.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                response.read()
                raise error_from(response)
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line.removeprefix("data: ")
                if payload == "[DONE]":
                    return
                chunk = json.loads(payload)
                if "error" in chunk:
                    raise DeskaiError(chunk["error"]["message"])
                if chunk.get("choices"):
                    yield chunk

    def close(self) -> None:
        self._http.close()


def error_from(response: httpx.Response) -> DeskaiError:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = f"server answered {response.status_code}"
    if response.status_code == 404:
        return ModelNotFoundError(message)
    if response.status_code == 400:
        return InvalidInputError(message)
    return DeskaiError(message)

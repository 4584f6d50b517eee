"""Stored responses (``store: true``, OpenAI's default): what ``previous_response_id`` continues.

One JSON file per response under ``$DESKAI_HOME/responses/``, written atomically: the response
object, the request's own input items (``input_items``) and the whole conversation that led to
it. Bounded, so a long-running server does not fill its disk with old turns: at most
``max_count`` responses and none older than ``max_age`` seconds (the oldest go first, checked
on every write); ``DELETE /v1/responses/{id}`` removes one at once.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskai.errors import InvalidInputError, NotFoundError
from deskai.store.atomic import atomic_write_bytes, sweep

_ID = re.compile(r"resp_[0-9a-f]{32}")
DEFAULT_MAX_COUNT = 1000
DEFAULT_MAX_AGE = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    conversation: list[dict[str, Any]]  # every item before this response's output

    def continued(self) -> list[dict[str, Any]]:
        """The items a follow-up turn starts from: the conversation and this output."""
        return [*self.conversation, *self.response["output"]]


class ResponseStore:
    def __init__(self, root: Path, *, max_count: int = DEFAULT_MAX_COUNT,
                 max_age: float = DEFAULT_MAX_AGE) -> None:
        self.root = root
        self.max_count = max_count
        self.max_age = max_age
        self._tmp = root / "tmp"
        self._lock = threading.Lock()  # pruning and writing from the server's threads

    def save(self, stored: StoredResponse) -> None:
        data = json.dumps({"response": stored.response, "input_items": stored.input_items,
                           "conversation": stored.conversation}).encode()
        with self._lock:
            atomic_write_bytes(self._path(stored.response["id"]), data, self._tmp)
            self._prune()

    def get(self, response_id: str, *, param: str = "response_id") -> StoredResponse:
        try:
            data = json.loads(self._path(response_id, param).read_bytes())
        except FileNotFoundError:
            raise NotFoundError(f"no stored response {response_id!r} (it may have expired, "
                                "been deleted, or been made with store: false)",
                                param=param) from None
        return StoredResponse(data["response"], data["input_items"], data["conversation"])

    def delete(self, response_id: str) -> None:
        try:
            self._path(response_id).unlink()
        except FileNotFoundError:
            raise NotFoundError(f"no stored response {response_id!r}",
                                param="response_id") from None

    def _path(self, response_id: str, param: str = "response_id") -> Path:
        if not _ID.fullmatch(response_id):  # ids name files: nothing else may reach the disk
            raise InvalidInputError(f"{response_id[:80]!r} is not a response id", param=param)
        return self.root / f"{response_id}.json"

    def _prune(self) -> None:
        sweep(self._tmp)
        files = sorted(self.root.glob("resp_*.json"), key=lambda p: p.stat().st_mtime)
        cutoff = time.time() - self.max_age
        excess = max(0, len(files) - self.max_count)
        for index, path in enumerate(files):
            if index < excess or path.stat().st_mtime < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

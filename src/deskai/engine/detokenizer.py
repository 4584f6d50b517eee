"""Turns a stream of token bytes into text that is safe to show, honouring stop strings.

Tokens can end in the middle of a UTF-8 character, and a stop string can span several tokens;
so text is held back until it is whole and cannot be the start of a stop string (the same rule
llama-server applies), then released.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field


@dataclass(slots=True)
class StopMatch:
    """Text that may be shown now, and whether a stop string ended the output."""

    text: str
    stopped: bool


@dataclass(slots=True)
class IncrementalDetokenizer:
    """Accumulates token bytes; ``push`` returns the text that is final so far."""

    stop: list[str] = field(default_factory=list)
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    _pending: str = ""
    _stopped: bool = False

    def push(self, piece: bytes) -> StopMatch:
        if self._stopped:
            return StopMatch("", True)
        self._pending += self._decoder.decode(piece)
        return self._release()

    def flush(self) -> str:
        """Everything still held back, at the end of generation (no stop string matched)."""
        if self._stopped:
            return ""
        text, self._pending = self._pending + self._decoder.decode(b"", final=True), ""
        return text

    def _release(self) -> StopMatch:
        for stop in self.stop:
            at = self._pending.find(stop)
            if at >= 0:
                self._stopped = True
                text, self._pending = self._pending[:at], ""
                return StopMatch(text, True)
        keep = self._longest_stop_prefix_suffix()
        cut = len(self._pending) - keep
        text, self._pending = self._pending[:cut], self._pending[cut:]
        return StopMatch(text, False)

    def _longest_stop_prefix_suffix(self) -> int:
        """Length of the longest tail of pending text that some stop string starts with."""
        best = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if stop.startswith(self._pending[-size:]):
                    best = size
                    break
        return best

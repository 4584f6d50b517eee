"""Every setting deskai reads from the environment, with its default and its doc, in one place.

Each setting is one ``Setting`` in ``SETTINGS``; the accessor functions below are the only
code that reads ``os.environ`` for deskai's own variables. ``deskai serve --help`` lists the
variables from the same table (``describe``), so the two cannot drift.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskai.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable: its name, default (as text) and what it does."""

    env: str
    default: str
    doc: str

    def raw(self) -> str:
        value = os.environ.get(self.env, "").strip()
        return value or self.default

    def number(self, kind: type[int] | type[float], low: float | None = None,
               high: float | None = None) -> Any:
        """The value as a number in ``[low, high]``; a clear one-line error if it is not."""
        text = self.raw()
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or (low is not None and value < low) \
                or (high is not None and value > high):
            bounds = f" between {low:g} and {high:g}" if low is not None and high is not None \
                else f" of at least {low:g}" if low is not None else ""
            raise InvalidInputError(f"${self.env} is {text!r}; it must be a "
                                    f"{'whole ' if kind is int else ''}number{bounds}",
                                    param=self.env)
        return value


HOME = Setting("DESKAI_HOME", "~/.deskai", "Root of the model store (blobs/ and manifests/).")
HOST = Setting("DESKAI_HOST", "127.0.0.1", "Address `deskai serve` binds; loopback by default.")
PORT = Setting("DESKAI_PORT", "3375", "Port `deskai serve` listens on and `deskai run` looks for.")
KEEP_ALIVE = Setting(
    "DESKAI_KEEP_ALIVE",
    "300",
    "Seconds an idle model stays loaded (like Ollama's keep_alive); 0 unloads at once, "
    "a negative value keeps it loaded forever.",
)
THREADS = Setting("DESKAI_THREADS", "0", "CPU threads for inference; 0 means every core.")
API_KEY = Setting("DESKAI_API_KEY", "", "When set, every route but /health needs this bearer key.")
CONTEXT = Setting(
    "DESKAI_CONTEXT",
    "4096",
    "Context length (tokens) a model is loaded with, capped by what the model was trained on.",
)
DEFAULT_MODEL = Setting(
    "DESKAI_DEFAULT_MODEL", "gemma3:270m", "Model used when a command needs one and none is named."
)

SETTINGS: tuple[Setting, ...] = (HOME, HOST, PORT, KEEP_ALIVE, THREADS, API_KEY, CONTEXT,
                                 DEFAULT_MODEL)


def describe() -> str:
    """One line per variable, its default and what it does (for ``--help``)."""
    return "\n\n".join(f"{s.env} (default {s.default or 'unset'}): {s.doc}" for s in SETTINGS)


def home() -> Path:
    """The store root, ``$DESKAI_HOME`` or ``~/.deskai``."""
    return Path(HOME.raw()).expanduser()


def host() -> str:
    return HOST.raw()


def port() -> int:
    return int(PORT.number(int, 1, 65535))


def keep_alive_seconds() -> float:
    return float(KEEP_ALIVE.number(float))


def threads() -> int:
    """Inference threads: ``$DESKAI_THREADS`` or, when 0 or unset, the machine's cores."""
    wanted = int(THREADS.number(int, 0))
    return wanted if wanted > 0 else (os.cpu_count() or 1)


def api_key() -> str | None:
    return API_KEY.raw() or None


def context_length() -> int:
    return int(CONTEXT.number(int, 1))


def default_model() -> str:
    return DEFAULT_MODEL.raw()

"""The planner's ``fit`` as a tool (deskai's MCP server, the agents' built-in ``fit``): what
``deskai fit --json`` prints, for a model named in the catalog or the store.

A tool's arguments come from a model, so unlike the CLI it reads no file path: a name that is
neither a catalog model nor a store name is refused before anything is opened.
"""

from __future__ import annotations

from typing import Any

from deskai import config
from deskai.errors import DeskaiError, UnknownArchitectureError
from deskai.hardware import target_system
from deskai.planner import Architecture, ModelFile, fit, read_gguf
from deskai.planner.architectures import find_catalog_model
from deskai.store import Store, resolve_model_path


def fit_report(model: str, *, on: str | None = None, context: int | None = None,
               quant: str | None = None, batch: int = 1, store: Store | None = None
               ) -> dict[str, Any]:
    """Will ``model`` fit on ``on`` (a catalog system; default: this machine), how fast."""
    system = target_system(on, threads=config.threads())
    return fit(_architecture(model, store or Store()), system, context=context, quant=quant,
               batch=batch).to_dict()


def _architecture(name: str, store: Store) -> Architecture | ModelFile:
    found = find_catalog_model(name)
    if found is not None:
        return found
    try:
        path = resolve_model_path(store, name)  # a store name, validated: it cannot escape
    except DeskaiError:
        raise UnknownArchitectureError(f"unknown model {name!r}: name a catalog model (see "
                                       "`deskai fit --list`) or a model in the store") from None
    return read_gguf(path)



"""Which backend loads a model: the table every engine factory is picked from.

The one place outside ``engine/`` that names a backend package. A new backend (a GPU engine,
a remote replica on a cluster) is a new entry here and a package under ``engine/``; the server
and the CLI do not change.
"""

from __future__ import annotations

from deskai.engine.protocol import Engine, EngineFactory, EngineOptions, ModelSpec
from deskai.errors import InvalidInputError

DEFAULT_BACKEND = "llamacpp"


def llamacpp(spec: ModelSpec, options: EngineOptions) -> Engine:
    from deskai.engine.llamacpp import create_engine  # imports llama-cpp-python: only on use

    return create_engine(spec, options)


BACKENDS: dict[str, EngineFactory] = {"llamacpp": llamacpp}


def offload_supported(name: str = DEFAULT_BACKEND) -> bool:
    """Whether the backend, as installed, can put layers on a GPU."""
    if name != "llamacpp":
        return False
    from deskai.engine.llamacpp.runner import supports_gpu_offload

    return supports_gpu_offload()


def backend(name: str = DEFAULT_BACKEND) -> EngineFactory:
    try:
        return BACKENDS[name]
    except KeyError:
        raise InvalidInputError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}",
                                param="backend") from None

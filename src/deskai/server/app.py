"""The HTTP application: the route table, and the state every handler reaches the engine by.

Routes, grouped:
    health      GET  /health
    openai      GET  /v1/models
                POST /v1/completions
                POST /v1/chat/completions
                POST /v1/embeddings
    ollama      GET  /api/version, /api/tags, /api/ps
                POST /api/show, /api/generate, /api/chat, /api/embed
                POST /api/pull, /api/copy
                DELETE /api/delete
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from deskai import __version__
from deskai.engine.manager import ModelManager
from deskai.server.errors import install_error_handlers
from deskai.server.ollama_routes import router as ollama_router
from deskai.server.openai_embeddings import router as embeddings_router
from deskai.server.openai_routes import router as openai_router
from deskai.server.request_log import JSONBodyMiddleware, RequestLogMiddleware
from deskai.store import Store


@dataclass(frozen=True, slots=True)
class ServerSettings:
    api_key: str | None = None


def create_app(manager: ModelManager, store: Store,
               settings: ServerSettings | None = None) -> FastAPI:
    app = FastAPI(title="deskai", version=__version__,
                  description="OpenAI-compatible API of a personal AI supercomputer.")
    app.state.manager = manager
    app.state.store = store
    app.state.settings = settings or ServerSettings()
    install_error_handlers(app)
    app.add_middleware(JSONBodyMiddleware)
    app.add_middleware(RequestLogMiddleware)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, object]:
        return {"status": "ok", "loaded_models": [m.name for m in manager.loaded()]}

    app.include_router(openai_router, tags=["openai"])
    app.include_router(embeddings_router, tags=["openai"])
    app.include_router(ollama_router, tags=["ollama"])
    return app

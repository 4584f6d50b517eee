"""The HTTP application: the route table, and the state every handler reaches the engine by.

Routes, grouped:
    health      GET  /health                         (open even with an API key)
    metrics     GET  /metrics                        (Prometheus text)
    openai      GET  /v1/models, /v1/models/{id}
                POST /v1/completions
                POST /v1/chat/completions
                POST /v1/embeddings
    ollama      GET  /api/version, /api/tags, /api/ps
                POST /api/show, /api/generate, /api/chat, /api/embed
                POST /api/pull, /api/copy
                DELETE /api/delete
    mcp         POST /mcp                            (MCP over streamable HTTP: deskai's tools)
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse

from deskai import __version__
from deskai.agents.mcp_server import mount as mount_mcp
from deskai.agents.servers import ServerConfig
from deskai.runtime.manager import ModelManager
from deskai.server.anthropic.routes import router as anthropic_router
from deskai.server.errors import install_error_handlers
from deskai.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from deskai.server.metrics import ServerMetrics
from deskai.server.ollama.routes import router as ollama_router
from deskai.server.openai.embeddings import router as embeddings_router
from deskai.server.openai.routes import router as openai_router
from deskai.server.openapi import install_openapi
from deskai.server.request_log import JSONBodyMiddleware, RequestLogMiddleware
from deskai.server.responses.mcp_tools import install_toolbox
from deskai.server.responses.routes import router as responses_router
from deskai.server.security import (
    DEFAULT_MAX_BODY_BYTES,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    SiteGuardMiddleware,
)
from deskai.store import Store


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What ``deskai serve`` decides about the HTTP edge."""

    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are named
    bind_host: str = "127.0.0.1"  # loopback: only loopback Host names are served
    allowed_hosts: tuple[str, ...] = ()  # Host names served beyond loopback ("*": any)
    mcp_servers: tuple[ServerConfig, ...] = ()  # run for /v1/responses' server-side MCP tools


def create_app(manager: ModelManager, store: Store,
               settings: ServerSettings | None = None) -> FastAPI:
    app = FastAPI(title="deskai", version=__version__,
                  description="OpenAI-compatible API of a personal AI supercomputer.")
    app.state.manager = manager
    app.state.store = store
    settings = settings or ServerSettings()
    app.state.settings = settings
    app.state.metrics = ServerMetrics(manager)
    install_error_handlers(app)
    install_openapi(app)
    # Added last runs first: log → site guard → CORS → key → size limit → JSON body → routes.
    app.add_middleware(JSONBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(SiteGuardMiddleware, bind_host=settings.bind_host,
                       allowed_hosts=settings.allowed_hosts,
                       allowed_origins=settings.cors_origins)
    app.add_middleware(RequestLogMiddleware)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, object]:
        if settings.api_key:  # open to anyone: say nothing a key would guard
            return {"status": "ok"}
        return {"status": "ok", "loaded_models": [m.name for m in manager.loaded()]}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False,
                   response_class=PlainTextResponse)
    def root() -> str:
        return "deskai is running"  # Ollama's clients probe GET / before anything else

    @app.get("/metrics", tags=["metrics"], response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(app.state.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    app.include_router(openai_router, tags=["openai"])
    app.include_router(embeddings_router, tags=["openai"])
    app.include_router(responses_router, tags=["responses"])
    app.include_router(anthropic_router, tags=["anthropic"])
    app.include_router(ollama_router, tags=["ollama"])
    # deskai's MCP tools for MCP hosts, behind the same guard, key and limits as every route
    mount_mcp(app, manager, store)
    if settings.mcp_servers:
        install_toolbox(app, settings.mcp_servers)
    return app

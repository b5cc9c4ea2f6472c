"""The headless HTTP API: the origin document's endpoints, each one operation of the facade.

The routes are generated from the operations table (app/faces/http/routes.py); this module
puts them together with what only HTTP has: bearer-token auth, the 1 MB body limit, request ids
(app/faces/http/middleware.py) and JSON error bodies (app/faces/http/errors.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from app import __version__
from app.faces.http.access_guard import AccessGuard, HostPolicy
from app.faces.http.docs_page import docs_router
from app.faces.http.errors import add_error_handlers
from app.faces.http.middleware import (
    MAX_BODY_BYTES,
    BearerAuth,
    BodyLimit,
    McpGateway,
    RequestContext,
)
from app.faces.http.routes import operations_router, public
from app.ops.protocol import Operations
from app.runtime.access_tokens import Credentials
from app.runtime.api_token import TokenStore

__all__ = ["MAX_BODY_BYTES", "create_app"]

LOOPBACK_ONLY = HostPolicy()


def create_app(
    ops: Operations,
    *,
    tokens: Credentials | TokenStore | None,
    mcp_app: ASGIApp | None = None,
    mcp_max_bytes: int = MAX_BODY_BYTES,
    hosts: HostPolicy | None = LOOPBACK_ONLY,
) -> FastAPI:
    """The API over `ops`; `tokens=None` serves without auth (the daemon allows it on loopback).
    A bare `TokenStore` accepts the token file's token only; `Credentials` named tokens too.
    `hosts=None` drops the Host, Origin and mutation checks: only for a private Unix socket,
    which no browser can reach."""
    app = FastAPI(
        # Our own /docs page instead of Swagger's and ReDoc's, which load scripts from a CDN.
        docs_url=None,
        redoc_url=None,
        title="Tooldeck",
        version=__version__,
        description="Run, watch and meter a fleet of MCP tool servers. "
        "Every endpoint but /healthz needs `Authorization: Bearer <tooldeck token show>`.",
    )
    app.state.ops = ops
    app.include_router(public)
    app.include_router(docs_router)
    app.include_router(operations_router())
    add_error_handlers(app)
    # Added innermost first: a request meets RequestContext, AccessGuard, BearerAuth, BodyLimit,
    # then the gateway (`/mcp...`) or the API.
    if mcp_app is not None:
        app.add_middleware(McpGateway, mcp_app=mcp_app)
    app.add_middleware(BodyLimit, mcp_max_bytes=mcp_max_bytes)
    app.add_middleware(BearerAuth, tokens=tokens)
    if hosts is not None:
        app.add_middleware(AccessGuard, policy=hosts)
    app.add_middleware(RequestContext)
    return app

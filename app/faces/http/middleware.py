"""What every request passes through before a route: its id and access line, the bearer token,
the body limit, and `/mcp` (the gateway) beside the API.

Pure ASGI, not route dependencies: a request to an unknown path, or to `/mcp`, meets the same
checks, and nothing reads a body that is over the limit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Mapping

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, Unauthorized
from app.core.jsonlog import request_id_var
from app.faces.http.errors import error_response, internal_error, shutting_down
from app.runtime.api_token import TokenStore

log = logging.getLogger("tooldeck.http")

MAX_BODY_BYTES = 1024 * 1024
# Liveness must answer without a token (load balancers, systemd watchdogs). The API description
# and its docs page hold no data, only the shape of the API that ships in the source, and a
# browser cannot send a bearer header when it loads a page.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# Polled by monitors every few seconds: their access lines would drown the rest. So would the
# gateway's, one per MCP message (its calls are metered as usage instead).
QUIET_PATHS = {"/healthz": logging.DEBUG, "/metrics": logging.DEBUG}
REQUEST_ID_HEADER = "x-request-id"
SAFE_HEADER_VALUE = re.compile(r"^[A-Za-z0-9._:@/-]{1,64}$")


class RequestContext:
    """Outermost: a request id for every request (in logs and in the answer) and an access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER)
        request_id = given if given and SAFE_HEADER_VALUE.match(given) else uuid.uuid4().hex[:16]
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # The daemon is stopping and this request outlived the grace period: say so, as
            # JSON, rather than let the server answer a bare 500.
            if status is None:
                await shutting_down()(scope, receive, send_with_id)
            raise
        except Exception:
            # A bug, never a user's mistake: logged whole (with this request's id) and answered
            # here, inside the request context, so the answer still carries the id to look for.
            log.exception("unhandled error")
            if status is None:
                await internal_error(request_id)(scope, receive, send_with_id)
        finally:
            log.log(
                logging.DEBUG
                if is_gateway_path(scope["path"])
                else QUIET_PATHS.get(scope["path"], logging.INFO),
                "%s %s %s",
                scope["method"],
                scope["path"],
                status or 500,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status or 500,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)


class BearerAuth:
    """Every path but the public ones needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, tokens: TokenStore | None) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.tokens is None or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        error = token_error(_header(scope, "authorization"), self.tokens)
        if error is None:
            await self.app(scope, receive, send)
            return
        await error_response(error)(scope, receive, send)


def token_error(authorization: str | None, tokens: TokenStore) -> Unauthorized | None:
    """Why a request's Authorization header is refused, or None: the rule of `BearerAuth` and
    of the gateway's lean path alike."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return Unauthorized("send the header Authorization: Bearer <`tooldeck token show`>")
    if not tokens.matches(given.strip()):
        return Unauthorized("wrong token: see `tooldeck token show`")
    return None


def gateway_refusal(
    headers: Mapping[bytes, bytes], tokens: TokenStore | None
) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
    """The API's admission check for a gateway request that the daemon's lean HTTP path answers
    without the ASGI middleware (app/faces/gateway/lean_http.py): status, JSON body and headers
    of the refusal, as the middleware would answer it, or None. Host and Origin are checked by
    the gateway itself on both paths."""
    if tokens is None:
        return None
    error = token_error(headers.get(b"authorization", b"").decode("latin-1") or None, tokens)
    if error is None:
        return None
    return error.status_code, orjson.dumps(error.to_dict()), [(b"www-authenticate", b"Bearer")]


def gateway_too_large(limit: int) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The 413 of `BodyLimit`, for the lean path."""
    error = PayloadTooLarge(_too_large_message(limit), field="body")
    return error.status_code, orjson.dumps(error.to_dict()), []


class BodyLimit:
    """413 for a body over the limit, whether it says its length up front or streams. The
    gateway's paths have their own limit (TOOLDECK_MAX_RESULT_BYTES): MCP messages run larger."""

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, mcp_max_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.mcp_max_bytes = mcp_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.mcp_max_bytes if is_gateway_path(scope["path"]) else self.max_bytes
        length = _header(scope, "content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            too_large = PayloadTooLarge(_too_large_message(limit), field="body")
            await error_response(too_large)(scope, receive, send)
            return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException is what FastAPI lets through from reading a body (any
                    # other error there becomes a 400); its handler answers 413.
                    raise StarletteHTTPException(413, _too_large_message(limit))
            return message

        await self.app(scope, counted_receive, send)


def _too_large_message(limit: int) -> str:
    size = f"{limit / 1048576:g} MB" if limit >= 1048576 else f"{limit} bytes"
    return f"over the limit of {size}"


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return str(value.decode("latin-1"))
    return None


def is_gateway_path(path: str) -> bool:
    return path == "/mcp" or path.startswith("/mcp/")


class McpGateway:
    """`/mcp`, `/mcp/servers/<name>`, `/mcp/profiles/<name>`: the MCP gateway's streamable-HTTP
    endpoints, behind the same auth and limits."""

    def __init__(self, app: ASGIApp, mcp_app: ASGIApp) -> None:
        self.app = app
        self.mcp_app = mcp_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_gateway_path(scope["path"]):
            await self.mcp_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

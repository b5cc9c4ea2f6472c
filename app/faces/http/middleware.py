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
from collections.abc import Callable, Mapping

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, TooldeckError, Unauthorized
from app.core.jsonlog import request_id_var
from app.faces.http.access_guard import HostPolicy
from app.faces.http.errors import error_response, internal_error, shutting_down
from app.faces.http.scopes import is_gateway_path, refusal_of
from app.runtime.access_tokens import Credentials, Identity
from app.runtime.api_token import TokenStore
from app.runtime.node_credentials import is_node_identity

log = logging.getLogger("tooldeck.http")

MAX_BODY_BYTES = 1024 * 1024
# A refusal as the lean gateway path writes it: status, JSON body, headers.
RefusalParts = tuple[int, bytes, list[tuple[bytes, bytes]]]
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
    """Every path but the public ones needs `Authorization: Bearer <token>`, of a scope that
    covers the request (app/faces/http/scopes.py); the holder's identity goes on to the route in
    `scope["state"]["identity"]`, for the audit actor."""

    def __init__(self, app: ASGIApp, tokens: Credentials | TokenStore | None) -> None:
        self.app = app
        self.tokens = Credentials(tokens) if isinstance(tokens, TokenStore) else tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.tokens is None or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        given = bearer_token(_header(scope, "authorization"))
        identity = None if given is None else await self.tokens.identify(given)
        query = scope.get("query_string", b"")
        error = token_refusal(given, identity, scope["method"], scope["path"], query)
        if error is None:
            scope.setdefault("state", {})["identity"] = identity
            await self.app(scope, receive, send)
            return
        await error_response(error)(scope, receive, send)


def bearer_token(authorization: str | None) -> str | None:
    """The token an `Authorization: Bearer <token>` header gives, or None."""
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


# The one API route another node reads: the log file of a server this node runs.
NODE_READABLE = re.compile(r"/api/v1/toolservers/servers/[^/]+/logs")


def token_refusal(
    given: str | None, identity: Identity | None, method: str, path: str, query: bytes
) -> TooldeckError | None:
    """Why a request with the token `given`, held by `identity` (None: nobody), is refused, or
    None: the rule of `BearerAuth` and of the daemon's lean gateway path alike."""
    if given is None:
        return Unauthorized("send the header Authorization: Bearer <`tooldeck token show`>")
    if identity is None:
        return Unauthorized("wrong token: see `tooldeck token show` or `tooldeck token list`")
    if is_node_identity(identity.name):
        if method == "GET" and NODE_READABLE.fullmatch(path):
            return None
        if not is_gateway_path(path):
            return Unauthorized(
                "a node's credential opens only the gateway (/mcp) and a server's logs, "
                "not the rest of the API"
            )
    return refusal_of(identity, method, path, query)


def gateway_admission(
    hosts: HostPolicy | None, tokens: Credentials | None, max_bytes: int
) -> Callable[[str, str, bytes, Mapping[bytes, bytes]], RefusalParts | bool]:
    """What the daemon's lean gateway path (app/faces/gateway/lean_http.py) asks of a request
    before its body, in the order the middleware asks it: AccessGuard's Host/Origin/mutation
    check, then BearerAuth's token and scope check, then BodyLimit's announced length. The
    answer is the refusal (status, JSON body, headers) the middleware would send, True to
    admit, or False when only the middleware can tell (a token not in `tokens`' memory, or
    whose use is due to be written): the request then goes through it."""

    def admit(
        method: str, path: str, query: bytes, headers: Mapping[bytes, bytes]
    ) -> RefusalParts | bool:
        if hosts is not None and (refusal := hosts.refusal(method, headers)) is not None:
            return refusal_parts(refusal)
        if tokens is not None:
            given = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
            identity = None if given is None else tokens.known(given)
            if given is not None and identity is None:
                return False
            if (error := token_refusal(given, identity, method, path, query)) is not None:
                return refusal_parts(error)
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > max_bytes:
            return gateway_too_large(max_bytes)
        return True

    return admit


def gateway_token_name(tokens: Credentials) -> Callable[[Mapping[bytes, bytes]], str | None]:
    """The name of the token an admitted gateway request carries, for its session's record.
    Memory alone answers: the request was admitted, so its token is known by now."""

    def token_name(headers: Mapping[bytes, bytes]) -> str | None:
        given = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        identity = None if given is None else tokens.known(given)
        return None if identity is None else identity.name

    return token_name


def gateway_too_large(limit: int) -> RefusalParts:
    """`BodyLimit`'s 413 on a gateway path, for the lean path."""
    return refusal_parts(PayloadTooLarge(_too_large_message(limit), field="body"))


def refusal_parts(error: TooldeckError) -> RefusalParts:
    """The status, body and headers of the middleware's answer to `error`, but for the content
    length and type, which whoever writes it adds."""
    response = error_response(error)
    headers = [
        (name, value)
        for name, value in response.raw_headers
        if name not in (b"content-length", b"content-type")
    ]
    return response.status_code, bytes(response.body), headers


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
        answering = False

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

        async def watched_send(message: Message) -> None:
            nonlocal answering
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except StarletteHTTPException as exc:
            # A mounted app that is no FastAPI route (the gateway's ASGI side) has no handler
            # for it: without this the client's oversized body became a 500.
            if exc.status_code != 413 or answering:
                raise
            too_large = PayloadTooLarge(_too_large_message(limit), field="body")
            await error_response(too_large)(scope, receive, send)


def _too_large_message(limit: int) -> str:
    size = f"{limit / 1048576:g} MB" if limit >= 1048576 else f"{limit} bytes"
    return f"over the limit of {size}"


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return str(value.decode("latin-1"))
    return None


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

"""The headless HTTP API: the origin document's endpoints, each mapped onto one facade method.

Nothing here decides anything: validation, lookups by id or name, masking and errors are the
facade's, so the API behaves exactly like the CLI and the dashboard. This module adds what only
HTTP has: bearer-token auth, the 1 MB body limit, request ids, JSON error bodies and the
Prometheus text format.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRouter
from fastapi.security import HTTPBearer
from mcp_types import GetPromptResult, Prompt, ReadResourceResult, Resource
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.core.errors import (
    BadRequest,
    InvalidInput,
    PayloadTooLarge,
    TooldeckError,
    Unauthorized,
    Unavailable,
)
from app.core.jsonlog import request_id_var
from app.core.schemas import (
    BulkOperationResult,
    BulkToolServerOperation,
    CallSource,
    ConflictPolicy,
    ExportFormat,
    ImportReport,
    JobStatus,
    ProbeReport,
    ServerEventResponse,
    ServerHealth,
    ServerRuntimeInfo,
    ServerToolResponse,
    ToolCallResult,
    ToolMetrics,
    ToolServerAnalytics,
    ToolServerCreate,
    ToolServerMetrics,
    ToolServerResponse,
    ToolServerUpdate,
    UsageTimeSeries,
)
from app.faces.http.alert_routes import router as alerts_router
from app.faces.http.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from app.faces.http.prometheus import render_metrics
from app.ops.protocol import Operations
from app.runtime.api_token import TokenStore

log = logging.getLogger("tooldeck.http")

TOOLSERVERS = "/api/v1/toolservers"
MAX_BODY_BYTES = 1024 * 1024
# Liveness must answer without a token (load balancers, systemd watchdogs). The API description
# and its docs page hold no data, only the shape of the API that ships in the source, and a
# browser cannot send a bearer header when it loads a page.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# Polled by monitors every few seconds: their access lines would drown the rest.
QUIET_PATHS = {"/healthz": logging.DEBUG, "/metrics": logging.DEBUG}
REQUEST_ID_HEADER = "x-request-id"
ACTOR_HEADER = "x-tooldeck-actor"
SAFE_HEADER_VALUE = re.compile(r"^[A-Za-z0-9._:@/-]{1,64}$")


# ---- API-only bodies ---------------------------------------------------------------------------


class ErrorBody(BaseModel):
    error: str = Field(description="the kind of error, e.g. NotFound")
    message: str = Field(description="what went wrong, for a person")
    field: str | None = Field(None, description="the input field at fault, when there is one")


class DisableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


class ToolUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    bypass_when_unavailable: bool | None = None


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = __version__


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "The request could not be read (e.g. the body is not JSON)"),
        (401, "No bearer token, or the wrong one"),
        (404, "No such server, tool or job"),
        (409, "A conflict: a duplicate name, a built-in server, or nothing running"),
        (413, "The body is over 1 MB"),
        (422, "A field has a value it cannot take; `field` names it"),
    )
}

# Declared for the OpenAPI document and the docs' "Authorize" button; the check itself is the
# middleware below, so that no request (not even one to an unknown path) gets past it.
bearer_scheme = HTTPBearer(
    auto_error=False, description="The token printed by `tooldeck token show`."
)


def facade(request: Request) -> Operations:
    ops: Operations = request.app.state.ops
    return ops


def actor_of(request: Request) -> str:
    # A CLI or dashboard attached to the daemon names its user, so events say who did it; the
    # token already proves the caller may act, the label only attributes the action.
    given = request.headers.get(ACTOR_HEADER, "")
    return given if SAFE_HEADER_VALUE.match(given) else "api"


Period = Annotated[str, Query(description="one of 1h, 24h, 7d, 30d, 90d")]
WindowStart = Annotated[
    datetime | None, Query(description="ISO 8601; with `end`, a window instead of `period`")
]
WindowEnd = Annotated[datetime | None, Query(description="ISO 8601, the end of the window")]
Facade = Annotated[Operations, Depends(facade)]
Actor = Annotated[str, Depends(actor_of)]
ToolServerRef = Annotated[
    str | None, Query(description="the server of a tool given by name rather than by id")
]
Reveal = Annotated[bool, Query(description="show env and header values instead of a mask")]

router = APIRouter(dependencies=[Depends(bearer_scheme)], responses=ERROR_RESPONSES)


# ---- servers -----------------------------------------------------------------------------------


@router.post(
    f"{TOOLSERVERS}/servers", status_code=201, response_model=ToolServerResponse, tags=["servers"]
)
async def create_server(body: ToolServerCreate, ops: Facade, actor: Actor) -> ToolServerResponse:
    return await ops.create_server(body, actor=actor)


@router.get(f"{TOOLSERVERS}/servers", response_model=list[ToolServerResponse], tags=["servers"])
async def list_servers(
    ops: Facade,
    status: str | None = None,
    enabled: bool | None = None,
    text: Annotated[
        str | None, Query(description="match name, display name or description")
    ] = None,
    reveal: Reveal = False,
) -> list[ToolServerResponse]:
    return await ops.list_servers(status=status, enabled=enabled, text=text, reveal=reveal)


# Before `/servers/{id}` so that a bulk request is never read as a server called "bulk".
@router.post(f"{TOOLSERVERS}/servers/bulk", response_model=BulkOperationResult, tags=["servers"])
async def bulk(body: BulkToolServerOperation, ops: Facade, actor: Actor) -> BulkOperationResult:
    return await ops.bulk(body, actor=actor)


@router.get(f"{TOOLSERVERS}/servers/{{id}}", response_model=ToolServerResponse, tags=["servers"])
async def get_server(id: str, ops: Facade, reveal: Reveal = False) -> ToolServerResponse:
    return await ops.get_server(id, reveal=reveal)


@router.put(f"{TOOLSERVERS}/servers/{{id}}", response_model=ToolServerResponse, tags=["servers"])
async def update_server(
    id: str, body: ToolServerUpdate, ops: Facade, actor: Actor
) -> ToolServerResponse:
    return await ops.update_server(id, body, actor=actor)


@router.delete(f"{TOOLSERVERS}/servers/{{id}}", status_code=204, tags=["servers"])
async def delete_server(id: str, ops: Facade, actor: Actor) -> Response:
    await ops.delete_server(id, actor=actor)
    return Response(status_code=204)


@router.post(
    f"{TOOLSERVERS}/servers/{{id}}/start", response_model=ToolServerResponse, tags=["control"]
)
async def start_server(id: str, ops: Facade, actor: Actor) -> ToolServerResponse:
    return await ops.start_server(id, actor=actor)


@router.post(
    f"{TOOLSERVERS}/servers/{{id}}/stop", response_model=ToolServerResponse, tags=["control"]
)
async def stop_server(id: str, ops: Facade, actor: Actor) -> ToolServerResponse:
    return await ops.stop_server(id, actor=actor)


@router.post(
    f"{TOOLSERVERS}/servers/{{id}}/restart", response_model=ToolServerResponse, tags=["control"]
)
async def restart_server(id: str, ops: Facade, actor: Actor) -> ToolServerResponse:
    return await ops.restart_server(id, actor=actor)


@router.post(
    f"{TOOLSERVERS}/servers/{{id}}/refresh", response_model=ToolServerResponse, tags=["control"]
)
async def refresh_tools(id: str, ops: Facade, actor: Actor) -> ToolServerResponse:
    return await ops.refresh_tools(id, actor=actor)


@router.post(
    f"{TOOLSERVERS}/servers/{{id}}/enable", response_model=ToolServerResponse, tags=["control"]
)
async def enable_server(id: str, ops: Facade, actor: Actor) -> ToolServerResponse:
    return await ops.enable_server(id, actor=actor)


@router.post(
    f"{TOOLSERVERS}/servers/{{id}}/disable", response_model=ToolServerResponse, tags=["control"]
)
async def disable_server(
    id: str, ops: Facade, actor: Actor, body: Annotated[DisableRequest | None, Body()] = None
) -> ToolServerResponse:
    reason = body.reason if body is not None else None
    return await ops.set_server_enabled(id, False, actor=actor, reason=reason)


@router.get(
    f"{TOOLSERVERS}/servers/{{id}}/tools", response_model=list[ServerToolResponse], tags=["tools"]
)
async def list_tools(id: str, ops: Facade) -> list[ServerToolResponse]:
    return await ops.list_tools(id)


@router.get(
    f"{TOOLSERVERS}/servers/{{id}}/events",
    response_model=list[ServerEventResponse],
    tags=["events"],
)
async def list_server_events(
    id: str, ops: Facade, kind: str | None = None, limit: int = 100
) -> list[ServerEventResponse]:
    return await ops.list_events(id, kind=kind, limit=limit)


@router.get(f"{TOOLSERVERS}/events", response_model=list[ServerEventResponse], tags=["events"])
async def list_events(
    ops: Facade,
    server: Annotated[str | None, Query(description="one server's events only")] = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[ServerEventResponse]:
    return await ops.list_events(server, kind=kind, limit=limit)


@router.get(f"{TOOLSERVERS}/servers/{{id}}/health", response_model=ServerHealth, tags=["health"])
async def check_health(id: str, ops: Facade) -> ServerHealth:
    """Probe the server now: is it running, and does it answer?"""
    return await ops.check_health(id)


@router.get(
    f"{TOOLSERVERS}/servers/{{id}}/runtime", response_model=ServerRuntimeInfo, tags=["health"]
)
async def runtime_info(id: str, ops: Facade) -> ServerRuntimeInfo:
    """Its process (pid, memory, CPU), uptime, last probe latency and next retry."""
    return await ops.runtime_info(id)


@router.get(f"{TOOLSERVERS}/servers/{{id}}/logs", response_model=list[str], tags=["health"])
async def log_tail(id: str, ops: Facade, lines: int = 100) -> list[str]:
    """The last lines the server wrote to its stderr."""
    return await ops.log_tail(id, lines)


@router.post(f"{TOOLSERVERS}/servers/{{id}}/probe", response_model=ProbeReport, tags=["health"])
async def probe_server(id: str, ops: Facade) -> ProbeReport:
    """Connect to a saved server once (a separate process or connection) and report."""
    return await ops.probe(id)


@router.post(f"{TOOLSERVERS}/probe", response_model=ProbeReport, tags=["health"])
async def probe_definition(body: ToolServerCreate, ops: Facade) -> ProbeReport:
    """Try a server definition before saving it; nothing is stored."""
    return await ops.probe(body)


@router.get(
    f"{TOOLSERVERS}/servers/{{id}}/metrics", response_model=ToolServerMetrics, tags=["analytics"]
)
async def server_metrics(
    id: str,
    ops: Facade,
    period: Period = "24h",
    start: WindowStart = None,
    end: WindowEnd = None,
) -> ToolServerMetrics:
    """Calls, errors, success rate, latency percentiles and uptime of one server."""
    return await ops.server_metrics(id, period, start, end)


@router.get(f"{TOOLSERVERS}/servers/{{id}}/resources", response_model=list[Resource], tags=["mcp"])
async def list_resources(id: str, ops: Facade) -> list[Resource]:
    """The server's MCP resources, read from the server now."""
    return await ops.list_resources(id)


@router.get(
    f"{TOOLSERVERS}/servers/{{id}}/resources/read", response_model=ReadResourceResult, tags=["mcp"]
)
async def read_resource(
    id: str, ops: Facade, uri: Annotated[str, Query(description="the resource's URI")]
) -> ReadResourceResult:
    return await ops.read_resource(id, uri)


@router.get(f"{TOOLSERVERS}/servers/{{id}}/prompts", response_model=list[Prompt], tags=["mcp"])
async def list_prompts(id: str, ops: Facade) -> list[Prompt]:
    """The server's MCP prompts, read from the server now."""
    return await ops.list_prompts(id)


class PromptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, str] = Field(default_factory=dict)


@router.post(
    f"{TOOLSERVERS}/servers/{{id}}/prompts/{{name}}", response_model=GetPromptResult, tags=["mcp"]
)
async def get_prompt(id: str, name: str, body: PromptRequest, ops: Facade) -> GetPromptResult:
    """One prompt, rendered by the server with these arguments."""
    return await ops.get_prompt(id, name, body.arguments)


# ---- tools -------------------------------------------------------------------------------------


@router.get(f"{TOOLSERVERS}/tools/{{id}}", response_model=ServerToolResponse, tags=["tools"])
async def get_tool(id: str, ops: Facade, server: ToolServerRef = None) -> ServerToolResponse:
    return await ops.get_tool(id, server)


@router.put(f"{TOOLSERVERS}/tools/{{id}}", response_model=ServerToolResponse, tags=["tools"])
async def update_tool(
    id: str, body: ToolUpdate, ops: Facade, actor: Actor, server: ToolServerRef = None
) -> ServerToolResponse:
    tool = await ops.get_tool(id, server)
    if body.enabled is not None:
        tool = await ops.set_tool_enabled(tool.id, body.enabled, actor=actor)
    if body.bypass_when_unavailable is not None:
        tool = await ops.set_tool_bypass(tool.id, body.bypass_when_unavailable, actor=actor)
    return tool


@router.post(
    f"{TOOLSERVERS}/tools/{{id}}/enable", response_model=ServerToolResponse, tags=["tools"]
)
async def enable_tool(
    id: str, ops: Facade, actor: Actor, server: ToolServerRef = None
) -> ServerToolResponse:
    return await ops.set_tool_enabled(id, True, actor=actor, server_ref=server)


@router.post(
    f"{TOOLSERVERS}/tools/{{id}}/disable", response_model=ServerToolResponse, tags=["tools"]
)
async def disable_tool(
    id: str, ops: Facade, actor: Actor, server: ToolServerRef = None
) -> ServerToolResponse:
    return await ops.set_tool_enabled(id, False, actor=actor, server_ref=server)


class ToolCallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] = Field(default_factory=dict, description="the tool's input")
    source: CallSource = Field("api", description="which face made the call, for usage records")
    client_name: str | None = Field(None, max_length=200)
    user: str | None = Field(None, max_length=200, description="default: the caller's actor")
    conversation_id: str | None = Field(None, max_length=200)


@router.post(f"{TOOLSERVERS}/tools/{{id}}/call", response_model=ToolCallResult, tags=["tools"])
async def call_tool(
    id: str, body: ToolCallRequest, ops: Facade, actor: Actor, server: ToolServerRef = None
) -> ToolCallResult:
    """Call the tool (starting its server if needed); the call is metered like every other.

    A tool error is a 200 with `is_error`; a refusal (disabled, bad arguments) is a 4xx.
    """
    if server is None:
        tool = await ops.get_tool(id)
        server, id = tool.server_id, tool.id
    return await ops.call_tool(
        server,
        id,
        body.arguments,
        source=body.source,
        client_name=body.client_name,
        user=body.user or actor,
        conversation_id=body.conversation_id,
    )


@router.get(f"{TOOLSERVERS}/tools/{{id}}/metrics", response_model=ToolMetrics, tags=["analytics"])
async def tool_metrics(
    id: str,
    ops: Facade,
    server: ToolServerRef = None,
    period: Period = "24h",
    start: WindowStart = None,
    end: WindowEnd = None,
) -> ToolMetrics:
    return await ops.tool_metrics(id, server, period, start, end)


@router.get("/api/v1/gateway/tools", response_model=list[ServerToolResponse], tags=["mcp"])
async def list_gateway_tools(ops: Facade) -> list[ServerToolResponse]:
    """The tools the MCP gateway at /mcp offers: enabled tools of enabled servers."""
    return await ops.list_gateway_tools()


# ---- analytics ---------------------------------------------------------------------------------


@router.get("/api/v1/analytics/toolservers", response_model=ToolServerAnalytics, tags=["analytics"])
async def analytics(
    ops: Facade, period: Period = "24h", start: WindowStart = None, end: WindowEnd = None
) -> ToolServerAnalytics:
    """The whole fleet: totals, success rate, latency, top and failing tools, daily usage."""
    return await ops.analytics(period, start, end)


@router.get("/api/v1/analytics/timeseries", response_model=UsageTimeSeries, tags=["analytics"])
async def time_series(
    ops: Facade,
    server: Annotated[str | None, Query(description="one server only (default: all)")] = None,
    period: Period = "24h",
    start: WindowStart = None,
    end: WindowEnd = None,
    buckets: int = 60,
) -> UsageTimeSeries:
    """Calls, errors and latency per time bucket, oldest first."""
    return await ops.time_series(server, period, start, end, buckets)


# ---- scheduler ---------------------------------------------------------------------------------


@router.get("/api/v1/scheduler/jobs", response_model=list[JobStatus], tags=["scheduler"])
async def scheduler_jobs(ops: Facade) -> list[JobStatus]:
    return await ops.scheduler_jobs()


@router.post("/api/v1/scheduler/jobs/{name}/run", response_model=JobStatus, tags=["scheduler"])
async def run_job(name: str, ops: Facade) -> JobStatus:
    """Run the job now and wait for it (joining a run in progress)."""
    return await ops.run_job(name)


# ---- import and export -------------------------------------------------------------------------


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any] = Field(
        description="an MCP client configuration: {mcpServers: {...}} or VS Code's {servers: {...}}"
    )
    dry_run: bool = False
    on_conflict: ConflictPolicy = "skip"


@router.post(f"{TOOLSERVERS}/import", response_model=ImportReport, tags=["servers"])
async def import_servers(body: ImportRequest, ops: Facade, actor: Actor) -> ImportReport:
    return await ops.import_servers(
        body.document, dry_run=body.dry_run, on_conflict=body.on_conflict, actor=actor
    )


@router.get(f"{TOOLSERVERS}/export", tags=["servers"])
async def export_servers(
    ops: Facade,
    names: Annotated[
        list[str] | None, Query(description="servers to export (default: all)")
    ] = None,
    format: ExportFormat = "claude",
    include_secrets: bool = False,
) -> dict[str, Any]:
    return await ops.export_servers(names, format=format, include_secrets=include_secrets)


# ---- system ------------------------------------------------------------------------------------


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    tags=["system"],
    responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}}},
)
async def metrics(ops: Facade) -> PlainTextResponse:
    """Per-server status and failures, per-tool calls, errors and latency, for Prometheus."""
    return PlainTextResponse(await render_metrics(ops), media_type=PROMETHEUS_CONTENT_TYPE)


public = APIRouter()


@public.get("/healthz", response_model=Liveness, tags=["system"])
async def healthz() -> Liveness:
    """Liveness: the daemon answers. Needs no token."""
    return Liveness()


# ---- errors ------------------------------------------------------------------------------------


def error_response(exc: TooldeckError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


_LOCATIONS = ("body", "query", "path", "header", "cookie")


def invalid_from_request(exc: RequestValidationError) -> TooldeckError:
    """The first validation error, named by its field the way the facade names it."""
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ())]
    where = loc[0] if loc and loc[0] in _LOCATIONS else ""
    rest = loc[1:] if where else loc
    kind = error.get("type", "")
    if kind == "json_invalid":
        detail = error.get("ctx", {}).get("error", "")
        return BadRequest(
            f"not valid JSON ({detail})" if detail else "not valid JSON", field="body"
        )
    field = ".".join(rest) or None
    message = str(error.get("msg", "invalid"))
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing" and where == "body" and not rest:
        message = "a JSON body is required"
    elif where == "body" and not rest and isinstance(error.get("input"), bytes | str):
        message = "expected a JSON object (send it with Content-Type: application/json)"
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    # Cross-field checks raise "field: message" from a model validator, which has no location.
    if field is None and (match := re.match(r"^([a-z_]+): (.+)$", message)):
        field, message = match.group(1), match.group(2)
    return InvalidInput(message, field=field or where or None)


async def _tooldeck_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TooldeckError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(invalid_from_request(exc))


_HTTP_ERROR_NAMES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    name = _HTTP_ERROR_NAMES.get(exc.status_code, "BadRequest")
    message = str(exc.detail)
    if exc.status_code == 404:
        message = "no such endpoint: see /docs for the API"
    body = {"error": name, "message": message}
    if exc.status_code == 413:
        body.update(field="body", message=f"body: {message}")
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def _shutting_down() -> JSONResponse:
    return error_response(Unavailable("cancelled: the daemon is shutting down"))


def _internal_error(request_id: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": "InternalError",
            "message": f"the daemon failed on its side; see its log for request {request_id}",
        },
        status_code=500,
    )


# ---- middleware --------------------------------------------------------------------------------


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
                await _shutting_down()(scope, receive, send_with_id)
            raise
        except Exception:
            # A bug, never a user's mistake: logged whole (with this request's id) and answered
            # here, inside the request context, so the answer still carries the id to look for.
            log.exception("unhandled error")
            if status is None:
                await _internal_error(request_id)(scope, receive, send_with_id)
        finally:
            log.log(
                QUIET_PATHS.get(scope["path"], logging.INFO),
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
        scheme, _, given = (_header(scope, "authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            error = Unauthorized("send the header Authorization: Bearer <`tooldeck token show`>")
        elif not self.tokens.matches(given.strip()):
            error = Unauthorized("wrong token: see `tooldeck token show`")
        else:
            await self.app(scope, receive, send)
            return
        await error_response(error)(scope, receive, send)


class BodyLimit:
    """413 for a body over the limit, whether it says its length up front or streams."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, "content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            too_large = PayloadTooLarge(_too_large_message(self.max_bytes), field="body")
            await error_response(too_large)(scope, receive, send)
            return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException is what FastAPI lets through from reading a body (any
                    # other error there becomes a 400); its handler answers 413.
                    raise StarletteHTTPException(413, _too_large_message(self.max_bytes))
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


# ---- the application ---------------------------------------------------------------------------


class McpGateway:
    """`/mcp`: the MCP gateway's streamable-HTTP endpoint, behind the same auth and limits."""

    def __init__(self, app: ASGIApp, mcp_app: ASGIApp) -> None:
        self.app = app
        self.mcp_app = mcp_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/mcp", "/mcp/"):
            await self.mcp_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(
    ops: Operations, *, tokens: TokenStore | None, mcp_app: ASGIApp | None = None
) -> FastAPI:
    """The API over `ops`; `tokens=None` serves without auth (the daemon allows it on loopback)."""
    app = FastAPI(
        title="Tooldeck",
        version=__version__,
        description="Run, watch and meter a fleet of MCP tool servers. "
        "Every endpoint but /healthz needs `Authorization: Bearer <tooldeck token show>`.",
    )
    app.state.ops = ops
    app.include_router(public)
    app.include_router(router)
    app.include_router(alerts_router)
    app.add_exception_handler(TooldeckError, _tooldeck_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Added innermost first: a request meets RequestContext, BearerAuth, BodyLimit, then `/mcp`
    # or the API.
    if mcp_app is not None:
        app.add_middleware(McpGateway, mcp_app=mcp_app)
    app.add_middleware(BodyLimit)
    app.add_middleware(BearerAuth, tokens=tokens)
    app.add_middleware(RequestContext)
    return app

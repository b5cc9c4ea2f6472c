"""The API's routes: one for each row of the operations table (app/ops/table.py).

A row's route is generated: its path, query and body parameters come from the row and from the
operation's signature in the `Operations` protocol, its description from the operation's
docstring, and it answers with what the facade returns. Written by hand are the routes whose
shape differs from their operation's (disable with a reason, a tool's PUT, probes, tool calls),
Prometheus' `/metrics` and the token-free `/healthz`. Nothing here decides anything:
validation, lookups by id or name, masking and errors are the facade's.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from fastapi import Body, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRouter
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from app import __version__
from app.core.access import acting_as
from app.core.schemas import (
    ProbeReport,
    ServerToolResponse,
    ToolCallResult,
    ToolServerCreate,
    ToolServerResponse,
)
from app.faces.http.errors import ERROR_RESPONSES
from app.faces.http.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from app.faces.http.prometheus import render_metrics
from app.ops.protocol import Operations
from app.ops.table import (
    OPERATIONS,
    TOOL_SERVER,
    DisableRequest,
    OperationSpec,
    QueryDoc,
    ToolCallRequest,
    ToolUpdate,
)
from app.runtime.access_tokens import Identity

ACTOR_HEADER = "x-tooldeck-actor"
SAFE_ACTOR = re.compile(r"^[A-Za-z0-9._:@/-]{1,64}$")
Endpoint = Callable[..., Awaitable[Any]]


def facade(request: Request) -> Operations:
    ops: Operations = request.app.state.ops
    return ops


def actor_of(request: Request) -> str:
    """Who acts: the token's name. An admin token's holder (a CLI or dashboard attached to the
    daemon) may name the person it acts for, and the actor says both; another token's header is
    not believed. Without auth (the private operations socket) the header is the actor."""
    given = request.headers.get(ACTOR_HEADER, "")
    on_behalf_of = given if SAFE_ACTOR.match(given) else None
    identity: Identity | None = request.scope.get("state", {}).get("identity")
    if identity is None:
        return on_behalf_of or "api"
    return acting_as(identity.name, on_behalf_of if identity.scope == "admin" else None)


Facade = Annotated[Operations, Depends(facade)]
Actor = Annotated[str, Depends(actor_of)]
ToolServerRef = Annotated[str | None, Query(description=TOOL_SERVER["server"].description)]

# Declared for the OpenAPI document and the docs' "Authorize" button; the check itself is the
# middleware's, so that no request (not even one to an unknown path) gets past it.
bearer_scheme = HTTPBearer(
    auto_error=False, description="The token printed by `tooldeck token show`."
)


# ---- generated from a row ----------------------------------------------------------------------


def generated_endpoint(spec: OperationSpec) -> Endpoint:
    """The route of `spec`: its parameters by where the row puts each argument."""
    declared = getattr(Operations, spec.name)
    hints = get_type_hints(declared)
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter("ops", keyword, annotation=Facade)]
    for name, argument in spec.signature.parameters.items():
        place, http = spec.places[name], spec.http_name(name)
        if place == "actor":
            parameters.append(inspect.Parameter(http, keyword, annotation=Actor))
        elif place == "path":
            # A path always has its segment: an optional argument is given when in the path.
            given = _without_none(hints[name])
            parameters.append(inspect.Parameter(http, keyword, annotation=given))
        elif place == "query":
            doc = spec.query.get(http, QueryDoc())
            query = Query(description=doc.description, ge=doc.ge, le=doc.le)
            annotation = Annotated[hints[name], query]  # type: ignore[valid-type]
            parameters.append(
                inspect.Parameter(http, keyword, annotation=annotation, default=argument.default)
            )
    if spec.body is not None:
        parameters.append(inspect.Parameter("body", keyword, annotation=spec.body))

    async def endpoint(ops: Operations, body: BaseModel | None = None, **given: Any) -> Any:
        arguments = {spec.argument(http): value for http, value in given.items()}
        if body is not None and spec.body_arg is not None:
            arguments[spec.body_arg] = body
        elif body is not None:
            fields = type(body).model_fields
            arguments |= {spec.argument(field): getattr(body, field) for field in fields}
        answer = await getattr(ops, spec.name)(**arguments, **spec.fixed)
        return Response(status_code=204) if spec.output is None else answer

    endpoint.__name__ = endpoint.__qualname__ = spec.route
    endpoint.__doc__ = declared.__doc__
    returns = Response if spec.output is None else spec.output
    endpoint.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    return endpoint


def _without_none(hint: Any) -> Any:
    members = [member for member in get_args(hint) if member is not type(None)]
    return members[0] if get_origin(hint) in (Union, UnionType) and len(members) == 1 else hint


# ---- written by hand --------------------------------------------------------------------------


async def disable_server(
    id: str, ops: Facade, actor: Actor, body: Annotated[DisableRequest | None, Body()] = None
) -> ToolServerResponse:
    """Disable a server: it is stopped and never started until enabled. The body may say why."""
    reason = body.reason if body is not None else None
    return await ops.set_server_enabled(id, False, actor=actor, reason=reason)


async def probe_server(id: str, ops: Facade) -> ProbeReport:
    """Connect to a saved server once (a separate process or connection) and report."""
    return await ops.probe(id)


async def probe_definition(body: ToolServerCreate, ops: Facade) -> ProbeReport:
    """Try a server definition before saving it; nothing is stored."""
    return await ops.probe(body)


async def update_tool(
    id: str, body: ToolUpdate, ops: Facade, actor: Actor, server: ToolServerRef = None
) -> ServerToolResponse:
    """Enable or disable a tool, and set whether it is bypassed while unavailable."""
    tool = await ops.get_tool(id, server)
    if body.enabled is not None:
        tool = await ops.set_tool_enabled(tool.id, body.enabled, actor=actor)
    if body.bypass_when_unavailable is not None:
        tool = await ops.set_tool_bypass(tool.id, body.bypass_when_unavailable, actor=actor)
    return tool


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


HAND_WRITTEN: dict[str, Endpoint] = {
    endpoint.__name__: endpoint
    for endpoint in (disable_server, probe_server, probe_definition, update_tool, call_tool)
}


# ---- the routers ------------------------------------------------------------------------------


def operations_router() -> APIRouter:
    """Every row of the table, in its order (a fixed path before a `{placeholder}` one)."""
    router = APIRouter(dependencies=[Depends(bearer_scheme)], responses=ERROR_RESPONSES)
    for spec in OPERATIONS:
        endpoint = HAND_WRITTEN[spec.route] if spec.custom_route else generated_endpoint(spec)
        router.add_api_route(
            spec.path,
            endpoint,
            methods=[spec.method],
            response_model=spec.output,
            status_code=spec.status,
            tags=list(spec.tags),
            name=spec.route,
        )
    router.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        response_class=PlainTextResponse,
        tags=["system"],
        responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}}},
    )
    return router


async def metrics(ops: Facade) -> PlainTextResponse:
    """Per-server status and failures, per-tool calls, errors and latency, for Prometheus."""
    return PlainTextResponse(await render_metrics(ops), media_type=PROMETHEUS_CONTENT_TYPE)


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = __version__


public = APIRouter()


@public.get("/healthz", response_model=Liveness, tags=["system"])
async def healthz() -> Liveness:
    """Liveness: the daemon answers. Needs no token."""
    return Liveness()

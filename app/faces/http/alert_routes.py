"""HTTP routes of the audit, alert, limit and trim operations (issue 9).

Included by `app.faces.http.api.create_app`; the bearer-token middleware there covers these
routes too.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.routing import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import (
    AlertResponse,
    AuditEntry,
    ServerLimitsResponse,
    ServerLimitsSpec,
    ServerToolResponse,
    TrimReport,
    TrimResult,
)
from app.ops.protocol import Operations

TOOLSERVERS = "/api/v1/toolservers"
ACTOR_HEADER = "x-tooldeck-actor"
SAFE_ACTOR = re.compile(r"^[A-Za-z0-9._:@/-]{1,64}$")


def facade(request: Request) -> Operations:
    ops: Operations = request.app.state.ops
    return ops


def actor_of(request: Request) -> str:
    # Same rule as app.faces.http.api: an attached CLI or dashboard names its user; else "api".
    given = request.headers.get(ACTOR_HEADER, "")
    return given if SAFE_ACTOR.match(given) else "api"


Facade = Annotated[Operations, Depends(facade)]
Actor = Annotated[str, Depends(actor_of)]
Limit = Annotated[int, Query(ge=1, le=10_000, description="at most this many")]
Days = Annotated[int, Query(ge=1, le=3650, description="the window in days")]

router = APIRouter()


class AutoDisable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int | None = Field(None, ge=1, le=1000, description="failed calls in a row; null: off")


@router.get("/api/v1/audit", response_model=list[AuditEntry], tags=["audit"])
async def list_audit(
    ops: Facade,
    server: Annotated[str | None, Query(description="a server's name or id")] = None,
    since: Annotated[str | None, Query(description="30m, 24h, 7d, 2w or ISO 8601")] = None,
    actor: Annotated[str | None, Query(description="only this actor")] = None,
    limit: Limit = 500,
) -> list[AuditEntry]:
    return await ops.list_audit(server, since=since, actor=actor, limit=limit)


@router.get("/api/v1/alerts", response_model=list[AlertResponse], tags=["alerts"])
async def list_alerts(
    ops: Facade,
    all: Annotated[bool, Query(description="resolved alerts too")] = False,
    limit: Limit = 200,
) -> list[AlertResponse]:
    return await ops.list_alerts(include_resolved=all, limit=limit)


@router.post("/api/v1/alerts/evaluate", response_model=list[AlertResponse], tags=["alerts"])
async def evaluate_alerts(ops: Facade) -> list[AlertResponse]:
    return await ops.evaluate_alerts()


@router.post("/api/v1/alerts/{id}/ack", response_model=AlertResponse, tags=["alerts"])
async def ack_alert(id: int, ops: Facade, actor: Actor) -> AlertResponse:
    return await ops.ack_alert(id, actor=actor)


@router.get(
    f"{TOOLSERVERS}/servers/{{id}}/limits", response_model=ServerLimitsResponse, tags=["limits"]
)
async def get_limits(id: str, ops: Facade) -> ServerLimitsResponse:
    return await ops.get_server_limits(id)


@router.put(
    f"{TOOLSERVERS}/servers/{{id}}/limits", response_model=ServerLimitsResponse, tags=["limits"]
)
async def set_limits(
    id: str, body: ServerLimitsSpec, ops: Facade, actor: Actor
) -> ServerLimitsResponse:
    return await ops.set_server_limits(id, body, actor=actor)


@router.put(
    f"{TOOLSERVERS}/tools/{{id}}/auto-disable", response_model=ServerToolResponse, tags=["tools"]
)
async def set_auto_disable(
    id: str,
    body: AutoDisable,
    ops: Facade,
    actor: Actor,
    server: Annotated[str | None, Query(description="the tool's server, for a tool name")] = None,
) -> ServerToolResponse:
    return await ops.set_tool_auto_disable(id, body.after, actor=actor, server_ref=server)


@router.get(f"{TOOLSERVERS}/trim", response_model=TrimReport, tags=["tools"])
async def trim_suggestions(ops: Facade, days: Days = 30) -> TrimReport:
    return await ops.trim_suggestions(days)


@router.post(f"{TOOLSERVERS}/trim/disable", response_model=TrimResult, tags=["tools"])
async def disable_unused_tools(ops: Facade, actor: Actor, days: Days = 30) -> TrimResult:
    return await ops.disable_unused_tools(days, actor=actor)

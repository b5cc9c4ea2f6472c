"""Who uses the gateway: the client sessions connected now and what each client called.

The sessions are the running gateway's, kept in memory only; the figures come from the usage
rows, which carry the client's name (`clientInfo.name` of its `initialize`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

# How a session reaches the gateway: streamable HTTP, the process's own stdin/stdout, or a
# `gateway --stdio` bridge on the daemon's Unix socket.
Transport = Literal["http", "stdio", "bridge"]


class GatewaySession(BaseModel):
    """One client session connected to the gateway now."""

    id: str = Field(description="the gateway's own id of the session, stable while it lasts")
    client_name: str | None = Field(None, description="clientInfo.name of its initialize")
    client_version: str | None = Field(None, description="clientInfo.version of its initialize")
    protocol_version: str | None = Field(None, description="the MCP version agreed on")
    transport: Transport
    endpoint: str = Field(description="aggregated, `server <name>` or `profile <name>`")
    token_name: str | None = Field(None, description="the named API token it connected with")
    since: datetime = Field(description="when it connected (UTC)")
    calls: int = Field(0, description="tool calls it made so far")
    errors: int = Field(0, description="of which failed")


class ClientFigures(BaseModel):
    """One client's tool calls over the window. Calls are the answered ones (ok or error);
    refused calls (disabled, unknown, not running) are counted apart."""

    client_name: str
    calls: int
    errors: int
    refused: int = 0
    error_rate: float | None = Field(None, ge=0, le=1, description="None without calls")
    p95_response_time_ms: float | None = None
    last_called: datetime | None = None
    sessions: int = Field(0, description="sessions of this client connected now")


class ClientTool(BaseModel):
    """A tool one client called over the window."""

    server_name: str | None = Field(None, description="None for a server since deleted")
    tool_name: str
    calls: int
    errors: int
    p95_response_time_ms: float | None = None
    last_called: datetime | None = None


class ClientsReport(BaseModel):
    """The gateway's sessions now, and every named client's figures over the window (the
    clients connected now first, then by calls)."""

    gateway_running: bool = Field(
        description="whether the process that answered runs a gateway (else `sessions` is empty)"
    )
    sessions: list[GatewaySession]
    clients: list[ClientFigures]
    period_start: datetime
    period_end: datetime


class ClientDetail(BaseModel):
    """One client: its figures, its sessions now and the tools it calls most."""

    gateway_running: bool
    figures: ClientFigures
    sessions: list[GatewaySession]
    tools: list[ClientTool]
    period_start: datetime
    period_end: datetime

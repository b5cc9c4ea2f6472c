"""Answers and inputs of the audit, alert, limit and trim operations (issue 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str | None
    kind: str
    server_id: str | None
    server_name: str | None = None
    message: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    secrets_changed: list[str] = Field(default_factory=list)


class AlertResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    rule: str
    subject: str
    server_id: str | None
    tool_id: str | None
    severity: str
    message: str
    status: str
    count: int
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    notified_at: datetime | None
    delivery: str | None
    details: dict[str, Any] | None = None


class ServerLimitsSpec(BaseModel):
    """Resource limits of a stdio server; None switches a limit off."""

    model_config = ConfigDict(extra="forbid")

    max_rss_mb: float | None = Field(None, gt=0)
    max_cpu_percent: float | None = Field(None, gt=0)
    sustain_s: float = Field(30.0, gt=0, le=3600)
    max_concurrent_calls: int | None = Field(None, ge=1, le=10_000)
    max_queued_calls: int = Field(0, ge=0, le=100_000)
    # Applied at spawn where the platform allows (app.runtime.spawn_guard); a change takes
    # effect at the next start.
    rlimit_as_mb: int | None = Field(None, ge=16, description="address space, MiB")
    rlimit_nofile: int | None = Field(None, ge=8, description="open files")
    rlimit_cpu_s: int | None = Field(None, ge=1, description="CPU seconds")
    run_as_user: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_.-]{0,63}\$?$")
    run_as_group: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_.-]{0,63}\$?$")


class ServerLimitsResponse(ServerLimitsSpec):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    server_id: str


class TrimTool(BaseModel):
    tool_id: str
    tool_name: str
    last_called: datetime | None


class TrimServer(BaseModel):
    server_id: str
    server_name: str
    enabled_tools: int
    unused_tools: int
    tools: list[TrimTool]


class TrimReport(BaseModel):
    days: int
    since: datetime
    total_unused: int
    servers: list[TrimServer]


class TrimResult(BaseModel):
    disabled: int
    tools: list[TrimTool]

"""SQLAlchemy models. Table and column names follow the origin document.

A server row holds two kinds of fields: intent (set by people: `enabled`, `auto_start`, ...) and
reality (set by the supervisor only: `status`, `consecutive_failures`, `last_*`). They are never
mixed into one field.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The placement of a server any live node of a fleet may run.
ANY_NODE = "any"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend.

    SQLite stores no offset, so values come back naive; they are always written in UTC, so
    reading them back as UTC is exact.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class ToolServer(Base):
    __tablename__ = "tool_servers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(String(20), default="stdio")
    command: Mapped[str | None] = mapped_column(Text)
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cwd: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    # intent
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_start: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_update: Mapped[bool] = mapped_column(Boolean, default=True)
    max_failures: Mapped[int] = mapped_column(Integer, default=3)
    startup_timeout_s: Mapped[float] = mapped_column(Float, default=30.0)
    call_timeout_s: Mapped[float] = mapped_column(Float, default=60.0)
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False)

    # reality
    status: Mapped[str] = mapped_column(String(20), default="stopped")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_health_check: Mapped[datetime | None] = mapped_column()
    last_startup_success: Mapped[datetime | None] = mapped_column()
    last_startup_error: Mapped[str | None] = mapped_column(Text)
    # The node whose supervisor wrote the status: only it writes the status again, until
    # another node starts the server (a fleet shares these rows).
    status_node: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    # Intent: the node that runs it (its command exists there), or "any" live node holding its
    # lease. One node on SQLite runs every server, whatever this says.
    placement: Mapped[str] = mapped_column(String(64), default=ANY_NODE, server_default=ANY_NODE)

    tools: Mapped[list[ServerTool]] = relationship(
        back_populates="server", cascade="all, delete-orphan", passive_deletes=True
    )


class ServerTool(Base):
    __tablename__ = "server_tools"
    __table_args__ = (UniqueConstraint("server_id", "name", name="uq_server_tools_server_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    server_id: Mapped[str] = mapped_column(
        ForeignKey("tool_servers.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    input_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Passed through by the gateway as the server listed them.
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # As the protocol spells them (readOnlyHint).
    annotations: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # What else the server listed with the tool (icons, execution, _meta), as it spelled it.
    listing_rest: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_available: Mapped[bool] = mapped_column(Boolean, default=False)
    bypass_when_unavailable: Mapped[bool] = mapped_column(Boolean, default=False)
    # Off (None) unless a person sets it: this many failed calls in a row disable the tool.
    auto_disable_after: Mapped[int | None] = mapped_column(Integer)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Answered calls and the tool's errors among them; refused and cancelled calls apart.
    total_calls: Mapped[int] = mapped_column(Integer, default=0)
    total_errors: Mapped[int] = mapped_column(Integer, default=0)
    total_refused: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    total_cancelled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_called: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    avg_response_time_ms: Mapped[float | None] = mapped_column(Float)
    discovered_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    server: Mapped[ToolServer] = relationship(back_populates="tools")


class ToolUsage(Base):
    __tablename__ = "tool_usage"
    __table_args__ = (
        Index("ix_tool_usage_called_at", "called_at"),
        Index("ix_tool_usage_server_called_at", "server_id", "called_at"),
        # No (tool_id, called_at) index: the rollups answer every per-tool question, and its
        # thousand scattered insertion points cost half of every insert (migration 0002).
    )

    # The key holds the time: on PostgreSQL the table is partitioned by it (migration 0011), and
    # a partitioned table's keys must hold its partition column. Ids alone stay unique.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign keys: usage outlives deleted servers and tools, and the writer must never
    # fail a batch because a server was deleted while its calls were queued.
    server_id: Mapped[str | None] = mapped_column(String(36))
    tool_id: Mapped[str | None] = mapped_column(String(36))
    tool_name: Mapped[str] = mapped_column(String(200))
    called_at: Mapped[datetime] = mapped_column(primary_key=True, default=utcnow)
    response_time_ms: Mapped[float | None] = mapped_column(Float)
    success: Mapped[bool] = mapped_column(Boolean)
    error_message: Mapped[str | None] = mapped_column(Text)
    # ok or error (the tool answered), refused (never sent: disabled, bad arguments, unknown,
    # not running) or cancelled (by the caller or a shutdown). See app.core.usage_record.
    outcome: Mapped[str] = mapped_column(String(10), default="ok", server_default="ok")
    source: Mapped[str | None] = mapped_column(String(20))
    client_name: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    conversation_id: Mapped[str | None] = mapped_column(String(200))
    arguments: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The latency histogram bucket (storage.latency), kept so that the raw rows at a window's
    # ragged edge can be merged with the hourly rollups by SQL alone.
    latency_bucket: Mapped[int | None] = mapped_column(SmallInteger)


class ServerEvent(Base):
    __tablename__ = "server_events"
    __table_args__ = (Index("ix_server_events_server_created", "server_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Nullable: system-wide events (scheduler, import) have no server. No foreign key, so the
    # "deleted" event of a server survives its row.
    server_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # The audit trail: before/after of the changed fields, secrets masked (app.governance.audit).
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ResourceSample(Base):
    """The memory and CPU of a local server's process tree at one moment (the `resources` job
    samples every running stdio server on its interval), kept for the retention of
    `resource_history_days`."""

    __tablename__ = "resource_samples"
    __table_args__ = (
        Index("ix_resource_samples_server_sampled", "server_id", "sampled_at"),
        Index("ix_resource_samples_sampled_at", "sampled_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign key, like usage: a batch never fails on a server deleted since its sample.
    server_id: Mapped[str] = mapped_column(String(36))
    sampled_at: Mapped[datetime] = mapped_column(default=utcnow)
    rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    cpu_percent: Mapped[float | None] = mapped_column(Float)


# ---- usage rollups ---------------------------------------------------------------------------
# Written by the usage recorder in the same transaction as the raw rows (storage.rollups) and
# kept past the raw-row retention. Every rollup row carries running totals ("cum_*": everything
# up to the end of its hour), so the totals of any whole-hour window are two index lookups:
# the latest row before the window's end minus the latest row before its start.


class UsageSeries(Base):
    """One (server, tool) pair that has been called; '' stands for an unknown id."""

    __tablename__ = "usage_series"
    __table_args__ = (
        UniqueConstraint("server_id", "tool_id", "tool_name", name="uq_usage_series_key"),
        Index("ix_usage_series_tool_id", "tool_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(String(36))
    tool_id: Mapped[str] = mapped_column(String(36))
    tool_name: Mapped[str] = mapped_column(String(200))
    # The running totals of the newest hour, so a window ending now needs no lookup at all.
    last_hour: Mapped[int] = mapped_column(Integer, default=0)
    last_called: Mapped[datetime | None] = mapped_column()
    cum_calls: Mapped[int] = mapped_column(Integer, default=0)
    cum_errors: Mapped[int] = mapped_column(Integer, default=0)
    cum_timed: Mapped[int] = mapped_column(Integer, default=0)
    cum_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cum_refused: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cum_cancelled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class UsageToolHourly(Base):
    """One series in one hour (`hour` counts whole hours since 1970-01-01 UTC)."""

    __tablename__ = "usage_tool_hourly"
    __table_args__ = (
        PrimaryKeyConstraint("series_id", "hour"),
        # Small rows looked up by their key: clustering them on it saves an index and a seek.
        {"sqlite_with_rowid": False},
    )

    series_id: Mapped[int] = mapped_column(Integer)
    hour: Mapped[int] = mapped_column(Integer)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    timed_calls: Mapped[int] = mapped_column(Integer, default=0)
    total_ms: Mapped[float] = mapped_column(Float, default=0.0)
    refused: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancelled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_called: Mapped[datetime | None] = mapped_column()
    latency_hist: Mapped[bytes | None] = mapped_column(LargeBinary)
    cum_calls: Mapped[int] = mapped_column(Integer, default=0)
    cum_errors: Mapped[int] = mapped_column(Integer, default=0)
    cum_timed: Mapped[int] = mapped_column(Integer, default=0)
    cum_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cum_refused: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cum_cancelled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class UsageScopes(Base):
    """Each rollup scope and its newest hour: the table that drives per-scope lookups."""

    __tablename__ = "usage_scopes"

    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    last_hour: Mapped[int] = mapped_column(Integer, default=0)


class UsageScopeHourly(Base):
    """Running totals and the running latency histogram of one server (`scope` is its id) or
    of all servers (`scope` is "*"), up to the end of `hour`."""

    __tablename__ = "usage_scope_hourly"
    __table_args__ = (PrimaryKeyConstraint("scope", "hour"),)

    scope: Mapped[str] = mapped_column(String(36))
    hour: Mapped[int] = mapped_column(Integer)
    last_called: Mapped[datetime | None] = mapped_column()
    cum_calls: Mapped[int] = mapped_column(Integer, default=0)
    cum_errors: Mapped[int] = mapped_column(Integer, default=0)
    cum_timed: Mapped[int] = mapped_column(Integer, default=0)
    cum_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cum_refused: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cum_cancelled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cum_latency_hist: Mapped[bytes | None] = mapped_column(LargeBinary)


class DeckState(Base):
    """Facts about this database that hold once, such as "the built-in servers were seeded"."""

    __tablename__ = "deck_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# ---- alerts and limits (app.governance) ----------------------------------------------------


class Alert(Base):
    """One incident of one rule on one subject: repeats count up instead of adding rows."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_rule_subject", "rule", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(120))  # "server:<id>" or "tool:<id>"
    server_id: Mapped[str | None] = mapped_column(String(36))
    tool_id: Mapped[str | None] = mapped_column(String(36))
    severity: Mapped[str] = mapped_column(String(20), default="warning")
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | resolved
    count: Mapped[int] = mapped_column(Integer, default=1)
    occurrence: Mapped[str | None] = mapped_column(String(120))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    notified_at: Mapped[datetime | None] = mapped_column()
    delivery: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ServerLimits(Base):
    """Resource limits of one stdio server; no row means no limits."""

    __tablename__ = "server_limits"

    server_id: Mapped[str] = mapped_column(
        ForeignKey("tool_servers.id", ondelete="CASCADE"), primary_key=True
    )
    max_rss_mb: Mapped[float | None] = mapped_column(Float)
    max_cpu_percent: Mapped[float | None] = mapped_column(Float)
    # How long a limit must be exceeded before the server is restarted.
    sustain_s: Mapped[float] = mapped_column(Float, default=30.0)
    max_concurrent_calls: Mapped[int | None] = mapped_column(Integer)
    max_queued_calls: Mapped[int] = mapped_column(Integer, default=0)
    # Hard limits and the account, applied by app.runtime.spawn_guard before the server's command
    # runs.
    rlimit_as_mb: Mapped[int | None] = mapped_column(Integer)
    rlimit_nofile: Mapped[int | None] = mapped_column(Integer)
    rlimit_cpu_s: Mapped[int | None] = mapped_column(Integer)
    run_as_user: Mapped[str | None] = mapped_column(String(64))
    run_as_group: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# ---- gateway profiles (app.faces.gateway) ----------------------------------------------------


class GatewayProfile(Base):
    """A named subset of the fleet with its own gateway endpoint (`/mcp/profiles/<name>`).

    `servers` are server names or globs; `tools` are tool patterns (`glob` for a tool of any
    chosen server, `server/glob` for one server's, `!pattern` to leave out); no tool pattern
    means every tool of the chosen servers.
    """

    __tablename__ = "gateway_profiles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    servers: Mapped[list[str]] = mapped_column(JSON, default=list)
    tools: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))


class ApiToken(Base):
    """A named, scoped token of the HTTP API. Only a hash of its value is kept: the value is
    shown once, when it is made."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # admin | operator | read | gateway
    scope: Mapped[str] = mapped_column(String(16), nullable=False)
    # A gateway token's one profile, by name; a profile renamed or deleted is reached no more.
    profile: Mapped[str | None] = mapped_column(String(64))
    # SHA-256 of the value: the value is 32 random bytes, so no slow hash is needed.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column()


# ---- upstream OAuth (app.runtime.upstream_oauth) ---------------------------------------------


class ServerOAuth(Base):
    """What an OAuth-protected HTTP server gave us at login: its dynamic client registration and
    tokens. Secrets: never shown, never exported; `server logout` deletes the row."""

    __tablename__ = "server_oauth"

    server_id: Mapped[str] = mapped_column(
        ForeignKey("tool_servers.id", ondelete="CASCADE"), primary_key=True
    )
    # OAuthClientInformationFull and OAuthToken as the SDK serializes them.
    client_info: Mapped[str | None] = mapped_column(Text)
    tokens: Mapped[str | None] = mapped_column(Text)
    # When the access token expires, as a UNIX time: the SDK keeps it only in memory, and a
    # restarted daemon must refresh an expired token rather than present it.
    expires_at: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# ---- nodes of a fleet (app.runtime.fleet) ----------------------------------------------------


class Node(Base):
    """A daemon on the shared database: what others need to reach it and to know it is alive."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    advertise_url: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column()
    # By the database's clock, like every lease expiry: the nodes' clocks may disagree.
    heartbeat_at: Mapped[datetime] = mapped_column()


class ServerLease(Base):
    """Which node runs an `any` server, until when (by the database's clock). A row whose
    expiry passed is free to take."""

    __tablename__ = "server_leases"
    __table_args__ = (Index("ix_server_leases_node", "node"),)

    server_id: Mapped[str] = mapped_column(
        ForeignKey("tool_servers.id", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str] = mapped_column(String(64), nullable=False)
    expires_at: Mapped[datetime] = mapped_column()


class FleetSecret(Base):
    """The one secret of a fleet, from which each node's credential for the others' gateways
    is derived (app.runtime.node_credentials). Any node that reads the database is trusted
    already: the secret adds no trust, it only lets a node prove which node it is over HTTP."""

    __tablename__ = "fleet_secret"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    secret: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

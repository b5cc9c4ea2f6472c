"""Input and output models of the operations facade. Field names follow the origin document."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any, Literal, get_args
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
ENV_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MASK = "********"

Transport = Literal["stdio", "streamable_http", "sse"]
TRANSPORTS: tuple[str, ...] = ("stdio", "streamable_http", "sse")
ServerStatus = Literal[
    "stopped", "starting", "running", "degraded", "stopping", "error", "needs_login"
]
SERVER_STATUSES: tuple[str, ...] = (
    "stopped",
    "starting",
    "running",
    "degraded",
    "stopping",
    "error",
    "needs_login",
)
BulkOperationName = Literal["start", "stop", "restart", "enable", "disable", "delete", "refresh"]
BULK_OPERATIONS: tuple[str, ...] = (
    "start",
    "stop",
    "restart",
    "enable",
    "disable",
    "delete",
    "refresh",
)
CallSource = Literal["tui", "api", "cli", "gateway"]
CALL_SOURCES: tuple[str, ...] = get_args(CallSource)


def check_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError("use 1-64 lowercase letters, digits, '-' or '_'")
    return value


def check_env(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not ENV_KEY_PATTERN.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
    return value


def check_headers(value: dict[str, str]) -> dict[str, str]:
    for key, header in value.items():
        if not HEADER_NAME_PATTERN.match(key):
            raise ValueError(f"{key!r} is not a valid header name")
        # Named, never echoed: the value is a secret, and an HTTP library's own error would
        # quote it (into a server's last error, its events, its alerts and its log).
        if any((ord(char) < 32 and char != "\t") or ord(char) == 127 for char in header):
            raise ValueError(f"the value of {key!r} contains a control character")
    return value


# A host name's labels: letters, digits, hyphens (not at either end), underscores as some
# private networks use them; at most 63 characters each.
NODE_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ANY_PLACEMENT = "any"


def check_placement(value: str | None) -> str | None:
    if value is not None and not NODE_PATTERN.match(value):
        raise ValueError("use a node name (1-64 letters, digits, '.', '-' or '_') or 'any'")
    return value


HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def check_http_url(value: str | None) -> str:
    text = value or ""
    if any(char.isspace() or ord(char) < 32 for char in text):
        raise ValueError("needs a URL without spaces or control characters")
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("needs an http:// or https:// URL with a host")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("needs a port from 1 to 65535 after the host's colon")
    if not _valid_host(parsed.hostname or ""):
        raise ValueError(f"needs a valid host name or address, not {parsed.hostname or '(none)'!r}")
    return text


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.removesuffix(".").split(".")
    return bool(ascii_host) and all(HOST_LABEL.match(label) for label in labels)


class _ServerFields(BaseModel):
    """Fields a person sets on a server, with their bounds."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=4000)
    transport: Transport = "stdio"
    command: str | None = Field(None, max_length=4000)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    auto_start: bool = True
    auto_update: bool = True
    max_failures: int = Field(3, ge=1, le=10)
    startup_timeout_s: float = Field(30.0, gt=0, le=600)
    call_timeout_s: float = Field(60.0, gt=0, le=3600)
    # A node name or "any"; None on creation: the creating node for stdio, "any" for remote.
    placement: str | None = Field(None, max_length=64)

    _check_env = field_validator("env")(check_env)
    _check_headers = field_validator("headers")(check_headers)
    _check_placement = field_validator("placement")(check_placement)


class ToolServerCreate(_ServerFields):
    name: str

    _check_name = field_validator("name")(check_name)

    @model_validator(mode="after")
    def _transport_needs(self) -> ToolServerCreate:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("command: a stdio server needs a command")
        else:
            try:
                check_http_url(self.url)
            except ValueError as exc:
                raise ValueError(f"url: a {self.transport} server {exc}") from None
        return self


class ToolServerUpdate(BaseModel):
    """A partial update: only the fields given change. The name never changes."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=4000)
    transport: Transport | None = None
    command: str | None = Field(None, max_length=4000)
    args: list[str] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    enabled: bool | None = None
    auto_start: bool | None = None
    auto_update: bool | None = None
    max_failures: int | None = Field(None, ge=1, le=10)
    startup_timeout_s: float | None = Field(None, gt=0, le=600)
    call_timeout_s: float | None = Field(None, gt=0, le=3600)
    placement: str | None = Field(None, max_length=64)

    _check_placement = field_validator("placement")(check_placement)

    @model_validator(mode="before")
    @classmethod
    def _name_is_immutable(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" in data:
            raise ValueError("name: a server's name cannot be changed")
        return data


class ToolServerResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    display_name: str | None
    description: str | None
    transport: Transport
    command: str | None
    args: list[str]
    env: dict[str, str]
    cwd: str | None
    url: str | None
    headers: dict[str, str]
    enabled: bool
    auto_start: bool
    auto_update: bool
    max_failures: int
    startup_timeout_s: float
    call_timeout_s: float
    is_builtin: bool
    status: ServerStatus
    disabled_reason: str | None
    consecutive_failures: int
    last_health_check: datetime | None
    last_startup_success: datetime | None
    last_startup_error: str | None
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    tools_count: int = 0
    enabled_tools_count: int = 0
    placement: str = ANY_PLACEMENT
    # The node that runs it now (or must: a pinned server's node); None when no node does.
    node: str | None = None
    # Why no node runs it: its node is down or unknown, or no live node holds its lease.
    unplaced_reason: str | None = None


class ServerToolResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    server_id: str
    server_name: str | None = None
    name: str
    display_name: str | None
    description: str | None
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    enabled: bool
    is_available: bool
    bypass_when_unavailable: bool
    # Off (None) unless set: this many failed calls in a row disable the tool (app.ops.alerts).
    auto_disable_after: int | None = None
    disabled_reason: str | None = None
    total_calls: int
    total_errors: int
    total_refused: int = 0
    total_cancelled: int = 0
    last_called: datetime | None
    last_error: str | None
    avg_response_time_ms: float | None
    discovered_at: datetime
    updated_at: datetime


class ServerEventResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    server_id: str | None
    server_name: str | None = None
    kind: str
    message: str
    actor: str | None
    created_at: datetime


class BulkToolServerOperation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Each id costs a start or a stop: a thousand is a whole fleet, and bounds one request's work.
    server_ids: list[str] = Field(min_length=1, max_length=1000)
    operation: BulkOperationName
    parameters: dict[str, Any] = Field(default_factory=dict)


class BulkOperationItem(BaseModel):
    server_id: str
    success: bool
    message: str


class BulkOperationResult(BaseModel):
    total_requested: int
    successful: int
    failed: int
    results: list[BulkOperationItem]
    errors: list[str]


class ServerHealth(BaseModel):
    """What the origin document's health endpoint returns, plus the probe's latency."""

    server_id: str
    server_name: str
    status: ServerStatus
    is_running: bool
    is_responsive: bool
    tools_count: int
    last_check: datetime | None
    error_message: str | None = None
    latency_ms: float | None = None


# ---- import and export of MCP client configurations ---------------------------------------

ConflictPolicy = Literal["skip", "overwrite", "rename"]
CONFLICT_POLICIES: tuple[str, ...] = ("skip", "overwrite", "rename")
ExportFormat = Literal["claude", "vscode"]
EXPORT_FORMATS: tuple[str, ...] = ("claude", "vscode")
# create: a new server; rename: a new server beside an existing one of the same name;
# overwrite: an existing server's definition replaced; unchanged: already as the file says;
# skip: left alone (the name exists, or it is a built-in, which an import never replaces).
ImportAction = Literal["create", "rename", "overwrite", "unchanged", "skip"]


class ImportItem(BaseModel):
    """What an import did (or, in a dry run, would do) with one entry of the document."""

    source_name: str = Field(description="the entry's name in the document")
    name: str = Field(description="the server name it maps to (after a rename, the new one)")
    action: ImportAction
    transport: Transport
    reason: str | None = None
    server_id: str | None = Field(None, description="the server written; none in a dry run")
    warnings: list[str] = Field(default_factory=list)


class ImportReport(BaseModel):
    dry_run: bool
    on_conflict: ConflictPolicy
    sections: list[str] = Field(description="the objects read: mcpServers, servers, mcp.servers")
    items: list[ImportItem]
    created: int = 0
    overwritten: int = 0
    unchanged: int = 0
    skipped: int = 0


# ---- runtime: processes, probes, jobs, tool calls -------------------------------------------


class ServerRuntimeInfo(BaseModel):
    """What the supervisor knows of a server right now, for the health pane. Read only."""

    server_id: str
    server_name: str
    status: ServerStatus
    pid: int | None = None
    rss_bytes: int | None = Field(None, description="resident memory of its whole process tree")
    cpu_percent: float | None = Field(None, description="CPU of its process tree since last read")
    processes: int = 0
    started_at: datetime | None = None
    uptime_s: float | None = None
    protocol_version: str | None = None
    implementation: str | None = Field(None, description="the server's own name and version")
    latency_ms: float | None = Field(None, description="of the last successful health probe")
    last_error: str | None = None
    next_retry_at: datetime | None = None
    log_path: str | None = None


class ProcessSample(BaseModel):
    """The memory and CPU of a server's process tree at one moment. Read only."""

    server_id: str
    server_name: str | None = None
    sampled_at: datetime
    rss_bytes: int | None = Field(None, description="resident memory of its whole process tree")
    cpu_percent: float | None = Field(None, description="CPU of its process tree since the last")


class ProcessHistory(BaseModel):
    """A server's memory and CPU samples over a window, oldest first. Read only."""

    server_id: str
    server_name: str
    since: datetime
    interval_s: float = Field(description="how often the samples are taken")
    samples: list[ProcessSample] = Field(default_factory=list)


class ProbeTool(BaseModel):
    name: str
    title: str | None = None
    description: str | None = None


class ProbeReport(BaseModel):
    """A one-shot connection test: start or connect, initialize, list tools, ping, stop."""

    ok: bool
    name: str
    transport: Transport
    target: str = Field(description="the command line or URL tried")
    error: str | None = None
    protocol_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    instructions: str | None = None
    connect_ms: float | None = Field(None, description="spawn or connect, and initialize")
    list_tools_ms: float | None = None
    ping_ms: float | None = None
    total_ms: float
    tools: list[ProbeTool] = Field(default_factory=list)
    stderr_tail: list[str] = Field(default_factory=list)


class JobStatus(BaseModel):
    name: str
    description: str
    interval_s: float
    running: bool
    runs: int = 0
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_duration_ms: float | None = None
    last_ok: bool | None = None
    last_outcome: str | None = None
    next_run_at: datetime | None = None


class ToolCallResult(BaseModel):
    """The MCP result of one call, and how long it took as seen by Tooldeck."""

    server_id: str | None = None
    server_name: str
    tool_name: str
    content: list[dict[str, Any]] = Field(default_factory=list)
    structured_content: dict[str, Any] | None = None
    is_error: bool
    error_message: str | None = Field(
        None, description="why, when Tooldeck refused or the call failed before a result"
    )
    duration_ms: float


# ---- analytics (storage.analytics computes them; field names follow the origin document) ------

ToolStatus = Literal["available", "unavailable", "disabled", "deleted", "unknown"]


class ToolServerMetrics(BaseModel):
    """One server over a window. Counts are exact; percentiles are within 1 % (see
    storage.latency). `period_start`/`period_end` are the window actually covered. Calls are
    the answered ones (errors are the tool's); refused and cancelled calls are counted apart."""

    server_id: str
    server_name: str
    status: ServerStatus
    total_tools: int
    enabled_tools: int
    total_calls: int
    total_errors: int
    total_refused: int = Field(
        0, description="calls Tooldeck refused (disabled, bad arguments, unknown, not running)"
    )
    total_cancelled: int = Field(0, description="calls cancelled before the tool answered")
    success_rate: float | None = Field(None, ge=0, le=1, description="None without calls")
    avg_response_time_ms: float | None = None
    last_activity: datetime | None = Field(None, description="the newest call in the window")
    uptime_percentage: float | None = Field(
        None, ge=0, le=1, description="the fraction of the window the server was up (0..1)"
    )
    p50_response_time_ms: float | None = None
    p95_response_time_ms: float | None = None
    p99_response_time_ms: float | None = None
    period_start: datetime
    period_end: datetime


class ToolMetrics(BaseModel):
    """One tool over a window; `calls_last_24h`/`errors_last_24h` cover the last 24 hours
    whatever the window. Percentiles are left out (None) in the system view's lists. Calls are
    the answered ones; refused and cancelled calls are counted apart."""

    tool_id: str | None
    tool_name: str
    server_id: str | None
    server_name: str | None
    status: ToolStatus
    total_calls: int
    total_errors: int
    total_refused: int = Field(
        0, description="calls Tooldeck refused (disabled, bad arguments, unknown, not running)"
    )
    total_cancelled: int = Field(0, description="calls cancelled before the tool answered")
    success_rate: float | None = Field(None, ge=0, le=1, description="None without calls")
    avg_response_time_ms: float | None = None
    last_called: datetime | None = Field(None, description="the newest call in the window")
    calls_last_24h: int
    errors_last_24h: int
    p50_response_time_ms: float | None = None
    p95_response_time_ms: float | None = None
    p99_response_time_ms: float | None = None
    period_start: datetime
    period_end: datetime


class UsageFigures(BaseModel):
    """The usage of one server or one tool over a window, as a table row shows it: counts
    exact, percentiles within 1 % (see storage.latency). Calls are the answered ones; refused
    and cancelled calls are counted apart."""

    id: str = Field(description="the server's or the tool's id")
    name: str
    calls: int
    errors: int
    refused: int = 0
    cancelled: int = 0
    success_rate: float | None = Field(None, ge=0, le=1, description="None without calls")
    avg_response_time_ms: float | None = None
    p50_response_time_ms: float | None = None
    p95_response_time_ms: float | None = None
    p99_response_time_ms: float | None = None
    last_called: datetime | None = Field(None, description="the newest call in the window")


class ToolServerAnalytics(BaseModel):
    """The whole system. `total_calls_today/week/month` and `total_errors_today` cover the UTC
    day, ISO week and month up to now; every other usage figure covers the window. Calls are the
    answered ones and errors the tools'; refusals and cancels never count as either."""

    total_servers: int
    active_servers: int
    total_tools: int
    enabled_tools: int
    total_calls_today: int
    total_calls_week: int
    total_calls_month: int
    total_errors_today: int
    overall_success_rate: float | None = Field(None, ge=0, le=1)
    avg_response_time_ms: float | None = None
    p95_response_time_ms: float | None = None
    total_refused: int = Field(
        0, description="calls Tooldeck refused (disabled, bad arguments, unknown, not running)"
    )
    total_cancelled: int = Field(0, description="calls cancelled before the tool answered")
    server_metrics: list[ToolServerMetrics]
    top_tools: list[ToolMetrics]
    failing_tools: list[ToolMetrics] = Field(
        description="every tool whose error rate reached the threshold with enough calls"
    )
    daily_usage: dict[str, int] = Field(description="calls per UTC day (YYYY-MM-DD) in the window")
    daily_errors: dict[str, int]
    generated_at: datetime
    period_start: datetime
    period_end: datetime


class UsagePoint(BaseModel):
    start: datetime
    end: datetime
    calls: int
    errors: int
    refused: int = 0
    cancelled: int = 0
    avg_response_time_ms: float | None = None
    p50_response_time_ms: float | None = None
    p95_response_time_ms: float | None = None
    p99_response_time_ms: float | None = None


class UsageTimeSeries(BaseModel):
    """Calls, errors and latency percentiles per bucket, oldest first, for sparklines and
    charts."""

    server_id: str | None
    server_name: str | None
    period_start: datetime
    period_end: datetime
    bucket_seconds: int
    points: list[UsagePoint]


# ---- audit, alerts, limits and trim ---------------------------------------------------------


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
    """Resource limits of a stdio server; None switches a limit off. `sustain_s` 0 restarts a
    server at the first sample over a limit."""

    # An infinite limit is no limit: that is None, not a number JSON cannot carry.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # Upper bounds past any machine's size: a bigger number is a typo, and one past 2**63 would
    # not even fit its database column.
    max_rss_mb: float | None = Field(None, gt=0, le=1 << 30)
    max_cpu_percent: float | None = Field(None, gt=0, le=100 * 4096)
    sustain_s: float = Field(30.0, ge=0, le=3600)
    max_concurrent_calls: int | None = Field(None, ge=1, le=10_000)
    max_queued_calls: int = Field(0, ge=0, le=100_000)
    # Applied at spawn where the platform allows (app.runtime.spawn_guard); a change takes
    # effect at the next start.
    rlimit_as_mb: int | None = Field(None, ge=16, le=1 << 30, description="address space, MiB")
    # Linux's own ceiling (fs.nr_open) is 2**20 by default.
    rlimit_nofile: int | None = Field(None, ge=8, le=1 << 30, description="open files")
    rlimit_cpu_s: int | None = Field(None, ge=1, le=1 << 31, description="CPU seconds")
    run_as_user: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_.-]{0,63}\$?$")
    run_as_group: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_.-]{0,63}\$?$")


class ServerLimitsResponse(ServerLimitsSpec):
    # What is stored is shown, even a limit an older version let through as infinite.
    model_config = ConfigDict(from_attributes=True, extra="ignore", allow_inf_nan=True)

    server_id: str


class TrimTool(BaseModel):
    tool_id: str
    tool_name: str
    last_called: datetime | None
    # What listing it costs every client's context (app.core.profiles.TOKEN_METHOD).
    estimated_tokens: int = 0


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
    # The context all the suggested tools cost together, estimated as a profile's is.
    total_tokens: int = 0


class TrimResult(BaseModel):
    disabled: int
    tools: list[TrimTool]


class LoginStarted(BaseModel):
    """A login of an OAuth-protected server, waiting for the person to open the URL."""

    server: str
    authorization_url: str = Field(description="open this in a browser")
    redirect_uri: str = Field(description="where the browser is sent back with the code")


class LoginStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    redirect_uri: str = Field(
        max_length=2000, description="a loopback URL that receives the code, or one to paste"
    )


class LoginFinish(BaseModel):
    model_config = ConfigDict(extra="forbid")

    redirect_url: str = Field(max_length=8000, description="the URL the browser was sent to")


# ---- nodes of a fleet -------------------------------------------------------------------------


class NodeResponse(BaseModel):
    """A daemon on the shared database; times are the database's."""

    name: str
    advertise_url: str | None
    version: str | None
    started_at: datetime
    heartbeat_at: datetime
    alive: bool
    this_node: bool = Field(description="the node that answered")
    servers: int = Field(description="servers it runs now: placed on it, or leased to it")

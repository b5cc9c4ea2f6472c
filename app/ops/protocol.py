"""What the faces may ask of Tooldeck: every user-visible operation, declared once.

`LocalOperations` (app/ops/facade.py) answers in this process; `RemoteOperations`
(app/ops/remote.py) asks a running daemon over HTTP. The dashboard, the CLI, the HTTP API and
the gateway hold an `Operations` and cannot tell which one it is. Both raise the exceptions of
`app.core.errors`. Mutating operations take an `actor` ("cli:alice", "api", "system"), named by
the event they write. Secrets (env and header values) are masked unless `reveal=True`.

The docstrings here are the operations' documentation: the HTTP API shows them too.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import mcp_types as types

from app.core.access import IssuedToken, TokenCreate, TokenInfo
from app.core.alert_rules import AlertRuleChanges, AlertRules
from app.core.changes import ChangeBus
from app.core.clients import ClientDetail, ClientsReport
from app.core.periods import DEFAULT_BUCKETS, DEFAULT_PERIOD
from app.core.profiles import (
    ProfileCreate,
    ProfileFields,
    ProfilePreview,
    ProfileResponse,
    ProfileUpdate,
)
from app.core.schemas import (
    AlertResponse,
    AuditEntry,
    BulkOperationResult,
    BulkToolServerOperation,
    CallSource,
    ConflictPolicy,
    ExportFormat,
    ImportReport,
    JobStatus,
    LoginStarted,
    NodeResponse,
    ProbeReport,
    ProcessHistory,
    ProcessSample,
    ServerEventResponse,
    ServerHealth,
    ServerLimitsResponse,
    ServerLimitsSpec,
    ServerRuntimeInfo,
    ServerToolResponse,
    ToolCallResult,
    ToolMetrics,
    ToolServerAnalytics,
    ToolServerCreate,
    ToolServerMetrics,
    ToolServerResponse,
    ToolServerUpdate,
    TrimReport,
    TrimResult,
    UsageFigures,
    UsageTimeSeries,
)
from app.runtime.call_latency import CallLatency


class AlertFeed(Protocol):
    """Where new alerts are announced as they are raised (the dashboard's notifications)."""

    def subscribe(self, listener: Callable[[AlertResponse], None]) -> Callable[[], None]:
        """Call `listener` with each new alert (it must not block); returns the unsubscriber."""
        ...


class ReadOperations(Protocol):
    """The reads a dashboard repeats on every refresh; they change nothing."""

    async def list_servers(
        self,
        *,
        status: str | None = None,
        enabled: bool | None = None,
        text: str | None = None,
        reveal: bool = False,
    ) -> list[ToolServerResponse]:
        """Servers by name, filtered by status, by the enabled flag, or by text found in the
        name, display name or description."""
        ...

    async def get_server(self, ref: str, *, reveal: bool = False) -> ToolServerResponse:
        """One server, by id or by name."""
        ...

    async def list_tools(self, server_ref: str) -> list[ServerToolResponse]:
        """A server's tools, as its last listing gave them, by name."""
        ...

    async def get_tool(self, ref: str, server_ref: str | None = None) -> ServerToolResponse:
        """One tool, by id, or by name with its server."""
        ...

    async def list_events(
        self, server_ref: str | None = None, *, kind: str | None = None, limit: int = 100
    ) -> list[ServerEventResponse]:
        """What happened to the servers (or to one of them), newest first."""
        ...

    async def log_tail(self, ref: str, lines: int = 100) -> list[str]:
        """The last lines the server wrote to its stderr: live from the supervisor, else from
        its log file."""
        ...

    async def server_metrics(
        self,
        ref: str,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolServerMetrics:
        """Calls, errors, success rate, latency percentiles and uptime of one server, over a
        period up to now or the window from `start` to `end`."""
        ...

    async def tool_metrics(
        self,
        tool_ref: str,
        server_ref: str | None = None,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolMetrics:
        """Calls, errors and latency percentiles of one tool over a window."""
        ...

    async def analytics(
        self,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolServerAnalytics:
        """The whole fleet: totals, success rate, latency, top and failing tools, daily usage."""
        ...

    async def time_series(
        self,
        server_ref: str | None = None,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
        buckets: int = DEFAULT_BUCKETS,
    ) -> UsageTimeSeries:
        """Calls, errors and latency per time bucket, oldest first (one server, or all)."""
        ...

    async def servers_figures(
        self,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[UsageFigures]:
        """Every server's calls, errors, success rate and latency percentiles over a window,
        by name: the figures a table of the whole fleet shows, in one cheap read."""
        ...

    async def tools_figures(
        self,
        server_ref: str,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[UsageFigures]:
        """Calls, errors, success rate and latency percentiles of every tool of one server over
        a window, by name, in one read."""
        ...

    async def list_audit(
        self,
        server_ref: str | None = None,
        *,
        since: str | None = None,
        actor: str | None = None,
        limit: int = 500,
    ) -> list[AuditEntry]:
        """Who changed what and when, newest first, with before and after (secrets masked).
        `since` is a duration (30m, 24h, 7d, 2w) or an ISO 8601 time."""
        ...

    async def list_alerts(
        self, *, include_resolved: bool = False, limit: int = 200
    ) -> list[AlertResponse]:
        """Open alerts, newest first; resolved ones too when asked."""
        ...


class Operations(ReadOperations, Protocol):
    """Every user-visible operation, and what a face may know of the facade behind them."""

    # Says when servers, statuses or tools change; None where nothing here can tell (a remote
    # facade: its faces refresh on a timer).
    changes: ChangeBus | None
    # Announces alerts as they are raised; None without an alert engine in this process.
    alerts: AlertFeed | None
    # The durations of the tool calls this process made, for Prometheus; None when remote.
    call_latency: CallLatency | None

    @property
    def supervised(self) -> bool:
        """A supervisor runs the servers behind these operations (this process's, or the
        daemon's), so start, stop, health checks, live logs and calls can answer."""
        ...

    def open_reader(self) -> AbstractAsyncContextManager[ReadOperations]:
        """The read operations on an event loop where a big read (a thousand servers) cannot
        hold up this one: in-process, a second facade on a thread of its own; remote, these
        operations themselves (their reads are I/O already)."""
        ...

    # ---- servers and tools: intent ---------------------------------------------------------

    async def create_server(
        self, data: ToolServerCreate | dict[str, Any], *, actor: str
    ) -> ToolServerResponse:
        """Add a server; a name already taken is a conflict."""
        ...

    async def update_server(
        self, ref: str, data: ToolServerUpdate | dict[str, Any], *, actor: str
    ) -> ToolServerResponse:
        """Change the fields given (a masked secret sent back means "unchanged"); the name
        cannot change."""
        ...

    async def delete_server(self, ref: str, *, actor: str) -> None:
        """Stop and delete a server (a built-in one can only be disabled)."""
        ...

    async def set_server_enabled(
        self, ref: str, enabled: bool, *, actor: str, reason: str | None = None
    ) -> ToolServerResponse:
        """Enable or disable a server; a disabled one is stopped and never started."""
        ...

    async def enable_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        """Enable a server, clearing its failures and the reason it was disabled."""
        ...

    async def disable_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        """Disable a server: it is stopped and never started until enabled."""
        ...

    async def set_tool_enabled(
        self, ref: str, enabled: bool, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        """Enable or disable a tool (re-enabling clears the reason the system gave)."""
        ...

    async def set_tool_bypass(
        self, ref: str, bypass: bool, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        """Whether a call of the tool answers with an error, rather than starting its server,
        while the tool is unavailable."""
        ...

    async def set_tool_auto_disable(
        self, ref: str, after: int | None, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        """Disable a tool on its own after `after` failed calls in a row (none: never)."""
        ...

    async def get_server_limits(self, ref: str) -> ServerLimitsResponse:
        """A server's resource limits (each one off until set)."""
        ...

    async def alert_rules(self) -> AlertRules:
        """The alert thresholds and hooks: each one's value (secrets masked), default, and
        where it came from (config.toml, the environment, or the default)."""
        ...

    async def set_alert_rules(
        self, data: AlertRuleChanges | dict[str, Any], *, actor: str
    ) -> AlertRules:
        """Change alert rules in config.toml and in the running daemon at once; one bad value
        changes nothing. A rule the environment sets is refused: it would win over the file."""
        ...

    async def set_server_limits(
        self, ref: str, data: ServerLimitsSpec | dict[str, Any], *, actor: str
    ) -> ServerLimitsResponse:
        """Replace a server's resource limits (a limit left out or null is off)."""
        ...

    async def bulk(
        self, data: BulkToolServerOperation | dict[str, Any], *, actor: str
    ) -> BulkOperationResult:
        """One operation over many servers; each server's outcome is reported, a failure
        does not stop the others."""
        ...

    # ---- the runtime: these need a supervisor ----------------------------------------------

    async def start_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        """Start a server and wait until it runs (or fails to)."""
        ...

    async def stop_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        """Stop a server and wait until it is stopped."""
        ...

    async def restart_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        """Stop and start a server again."""
        ...

    async def refresh_tools(self, ref: str, *, actor: str) -> ToolServerResponse:
        """List a running server's tools again."""
        ...

    async def begin_login(self, ref: str, redirect_uri: str, *, actor: str) -> LoginStarted:
        """Begin the OAuth login of an HTTP server: the URL a person opens to authorize it."""
        ...

    async def finish_login(self, ref: str, redirect_url: str, *, actor: str) -> ToolServerResponse:
        """Complete a login with the URL the browser was sent back to; store the tokens and
        start the server."""
        ...

    async def logout_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        """Forget an HTTP server's OAuth tokens and registration; it needs a login again."""
        ...

    async def check_health(self, ref: str) -> ServerHealth:
        """Probe the server now (ping, or a tool listing where ping is missing): is it running,
        and does it answer?"""
        ...

    async def runtime_info(self, ref: str) -> ServerRuntimeInfo:
        """Its process (pid, memory, CPU), uptime, last probe latency and next retry."""
        ...

    async def process_history(self, ref: str, since: str = "1h") -> ProcessHistory:
        """The memory and CPU of its process tree over time, oldest first, as the `resources`
        job sampled them; `since` is a duration (30m, 24h, 7d, 2w) or an ISO 8601 time."""
        ...

    async def process_samples(self) -> list[ProcessSample]:
        """The latest memory and CPU sample of every running local server."""
        ...

    async def scheduler_jobs(self) -> list[JobStatus]:
        """The periodic jobs (health checks, rollups, alerts, ...) and how their runs went."""
        ...

    async def run_job(self, name: str) -> JobStatus:
        """Run a scheduler job now and wait for it (joining a run already in progress)."""
        ...

    async def list_nodes(self) -> list[NodeResponse]:
        """The nodes of the fleet on this database (one on SQLite): address, version, start,
        last heartbeat, whether they are alive, and how many servers each runs."""
        ...

    async def probe(self, target: str | ToolServerCreate | dict[str, Any]) -> ProbeReport:
        """Start or connect once, initialize, list tools, ping, stop; nothing is stored.

        `target` is a server's name or id, or a definition not saved yet (an edit form's).
        """
        ...

    async def evaluate_alerts(self) -> list[AlertResponse]:
        """Evaluate every alert rule now; the open alerts afterwards."""
        ...

    async def ack_alert(self, alert_id: int, *, actor: str) -> AlertResponse:
        """Acknowledge an alert: it stays (open until its condition clears), marked as seen."""
        ...

    # ---- calls, and what the gateway lists and forwards ------------------------------------

    async def call_tool(
        self,
        server: str,
        tool: str,
        arguments: Any = None,
        *,
        source: CallSource,
        client_name: str | None = None,
        user: str | None = None,
        conversation_id: str | None = None,
    ) -> ToolCallResult:
        """Call a tool: check intent, validate, route (starting the server on demand), time it,
        and record the usage of every outcome, refusals included.

        Refusals raise (NotFound, Conflict for a disabled server or tool, InvalidInput for bad
        arguments, NotRunning); a call that reached no result (a timeout, a broken connection)
        and a bypassed one return an error result.
        """
        ...

    async def list_gateway_tools(self) -> list[ServerToolResponse]:
        """The tools the MCP gateway offers: enabled tools of enabled servers, leaving out an
        unavailable tool with bypass on (it could only answer with an error)."""
        ...

    async def list_resources(self, server_ref: str) -> list[types.Resource]:
        """The server's MCP resources, read from the server now."""
        ...

    async def read_resource(self, server_ref: str, uri: str) -> types.ReadResourceResult:
        """One MCP resource of the server, read now."""
        ...

    async def list_prompts(self, server_ref: str) -> list[types.Prompt]:
        """The server's MCP prompts, read from the server now."""
        ...

    async def get_prompt(
        self, server_ref: str, name: str, arguments: dict[str, str]
    ) -> types.GetPromptResult:
        """One prompt, rendered by the server with these arguments."""
        ...

    # ---- gateway profiles ---------------------------------------------------------------

    async def list_profiles(self) -> list[ProfileResponse]:
        """Every gateway profile, by name."""
        ...

    async def get_profile(self, name: str) -> ProfileResponse:
        """One gateway profile, by name or id."""
        ...

    async def create_profile(
        self, data: ProfileCreate | dict[str, Any], *, actor: str
    ) -> ProfileResponse:
        """A new profile: a named set of servers and tools with its own gateway endpoint."""
        ...

    async def update_profile(
        self, name: str, data: ProfileUpdate | dict[str, Any], *, actor: str
    ) -> ProfileResponse:
        """Change a profile's name, description or patterns (the fields given)."""
        ...

    async def delete_profile(self, name: str, *, actor: str) -> None:
        """Delete a profile; clients of its endpoint are refused from then on."""
        ...

    async def preview_profile(self, name: str) -> ProfilePreview:
        """What a stored profile's clients see now: its tools, their count, and an estimate of
        the context their tool list costs (with the method named)."""
        ...

    async def preview_profile_draft(self, data: ProfileFields | dict[str, Any]) -> ProfilePreview:
        """The same preview for patterns not saved yet (the edit form's preview)."""
        ...

    # ---- MCP client configurations in and out, and tools nobody calls ---------------------

    async def import_servers(
        self,
        document: Any,
        *,
        dry_run: bool = False,
        on_conflict: ConflictPolicy = "skip",
        actor: str,
    ) -> ImportReport:
        """Add the servers of an MCP client configuration: all of them, or none on an error."""
        ...

    async def export_servers(
        self,
        names: Sequence[str] | None = None,
        *,
        format: ExportFormat = "claude",
        include_secrets: bool = False,
    ) -> dict[str, Any]:
        """The named servers (all when none are named) as a client configuration document."""
        ...

    async def trim_suggestions(self, days: int = 30, end: datetime | None = None) -> TrimReport:
        """Enabled tools not called in the last `days` days (before `end`, default now), per
        server, each with the context its listing costs."""
        ...

    async def disable_unused_tools(self, days: int = 30, *, actor: str) -> TrimResult:
        """Disable every tool the trim suggestions over `days` name (the caller confirmed the
        list)."""
        ...

    # ---- API tokens ---------------------------------------------------------------------

    async def list_tokens(self) -> list[TokenInfo]:
        """Every named API token: name, scope, profile, when made and last used; never a value."""
        ...

    async def add_token(self, data: TokenCreate | dict[str, Any], *, actor: str) -> IssuedToken:
        """A new named token with a scope (a gateway token may be bound to one profile). Its
        value is in this answer only: only its hash is stored."""
        ...

    async def revoke_token(self, name: str, *, actor: str) -> None:
        """Revoke a named token: requests with it are refused from then on."""
        ...

    # ---- gateway clients ----------------------------------------------------------------

    async def clients(
        self,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ClientsReport:
        """The gateway's client sessions connected now (client, protocol version, endpoint,
        token, since when, calls), and each named client's calls, errors and p95 over a period
        up to now or the window from `start` to `end` (counted from the raw usage rows, the
        only ones that keep the client: no further back than their retention)."""
        ...

    async def client_detail(
        self,
        name: str,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ClientDetail:
        """One client by name: its figures over the window, its sessions connected now and the
        tools it calls most."""
        ...


def operation_names(protocol: type) -> tuple[str, ...]:
    """The operations a protocol declares (its public coroutine methods), in declared order."""
    names: dict[str, None] = {}
    for cls in reversed(protocol.__mro__):
        for name, member in vars(cls).items():
            if inspect.iscoroutinefunction(member) and not name.startswith("_"):
                names[name] = None
    return tuple(names)


def shaped_as(
    protocol: type, name: str, body: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    """`body` dressed as the protocol's operation `name`: its name, docstring and signature,
    so that `help()`, `inspect.signature` and argument binding all see the declared one."""
    declared = getattr(protocol, name)
    body.__name__ = name
    body.__doc__ = declared.__doc__
    body.__signature__ = inspect.signature(declared)  # type: ignore[attr-defined]
    return body

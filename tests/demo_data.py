"""A deterministic demo fleet: servers in every state, their tools, events and 30 days of usage.

Used by the dashboard's snapshot tests, `make screenshots` and the benchmark. Definitions go
through the facade (so they are valid servers); what only the supervisor and the usage recorder
write (statuses, discovered tools, events at chosen times, usage) is written here directly, as
they would have written it, so the demo needs no running processes and no waiting.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from app.core.clients import GatewaySession, Transport
from app.core.usage_record import UsageRecord
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from storage.models import Alert, ApiToken, ServerEvent, ServerTool, ToolServer

# A fixed instant for tests, in the past (a window's end in the future counts as now) and
# within the ten years a window may reach back; the demo's own screens never prune it.
DEMO_NOW = datetime(2019, 3, 14, 15, 9, 26, tzinfo=UTC)
USAGE_DAYS = 30
SEED = 5


def _schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or []}


STRING = {"type": "string"}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}


@dataclass(frozen=True)
class DemoTool:
    name: str
    description: str
    schema: dict[str, Any]
    weight: float = 1.0  # share of its server's calls
    latency_ms: float = 40.0  # the median
    error_rate: float = 0.005
    enabled: bool = True
    bypass: bool = False


@dataclass(frozen=True)
class DemoServer:
    definition: dict[str, Any]
    status: str
    tools: tuple[DemoTool, ...]
    calls_per_hour: float = 6.0
    up_hours: float | None = None  # running since, in hours before now
    failures: int = 0
    last_error: str | None = None
    disabled_reason: str | None = None
    active_until_hours: float = 0.0  # no usage in the last N hours (stopped servers)
    events: tuple[tuple[float, str, str, str], ...] = ()  # hours ago, kind, message, actor
    builtin: bool = False


CALCULATOR_TOOLS = (
    DemoTool(
        "add", "Add two numbers: a + b.", _schema({"a": NUMBER, "b": NUMBER}, ["a", "b"]), 3, 2
    ),
    DemoTool(
        "subtract", "Subtract b from a.", _schema({"a": NUMBER, "b": NUMBER}, ["a", "b"]), 1, 2
    ),
    DemoTool(
        "multiply", "Multiply two numbers.", _schema({"a": NUMBER, "b": NUMBER}, ["a", "b"]), 2, 2
    ),
    DemoTool(
        "divide",
        "Divide a by b; b must not be 0.",
        _schema({"a": NUMBER, "b": NUMBER}, ["a", "b"]),
        1,
        2,
        0.04,
    ),
    DemoTool("sqrt", "The square root of x.", _schema({"x": NUMBER}, ["x"]), 0.5, 2),
    DemoTool(
        "evaluate",
        "Evaluate an arithmetic expression such as (2+3)*4.",
        _schema({"expression": {**STRING, "description": "for example (2+3)*4"}}, ["expression"]),
        4,
        3,
        0.02,
    ),
)

DEMO_FLEET: tuple[DemoServer, ...] = (
    DemoServer(
        {
            "name": "calculator",
            "display_name": "Calculator",
            "description": "Arithmetic and a safe expression evaluator (built in)",
            # Not this machine's interpreter: screenshots and snapshots must not show its path.
            "command": "python3",
            "args": ["-m", "app.builtin.calculator"],
        },
        "running",
        CALCULATOR_TOOLS,
        calls_per_hour=14,
        up_hours=50.2,
        builtin=True,
        events=(
            (50.21, "starting", "starting calculator", "system"),
            (50.2, "started", "started calculator (6 tools)", "system"),
        ),
    ),
    DemoServer(
        {
            "name": "github",
            "display_name": "GitHub",
            "description": "Issues, pull requests and code search",
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-github"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_demo0000000000000000000000000000"},
        },
        "running",
        (
            DemoTool(
                "search_repositories",
                "Search repositories.",
                _schema({"query": STRING}, ["query"]),
                3,
                420,
            ),
            DemoTool(
                "get_issue",
                "One issue.",
                _schema(
                    {"owner": STRING, "repo": STRING, "issue_number": INTEGER},
                    ["owner", "repo", "issue_number"],
                ),
                4,
                260,
            ),
            DemoTool(
                "create_issue",
                "Open an issue.",
                _schema(
                    {"owner": STRING, "repo": STRING, "title": STRING, "body": STRING},
                    ["owner", "repo", "title"],
                ),
                1,
                610,
                0.03,
            ),
            DemoTool(
                "list_pull_requests",
                "Pull requests of a repository.",
                _schema(
                    {"owner": STRING, "repo": STRING, "state": {"enum": ["open", "closed", "all"]}},
                    ["owner", "repo"],
                ),
                2,
                380,
            ),
            DemoTool(
                "get_file_contents",
                "A file at a ref.",
                _schema(
                    {"owner": STRING, "repo": STRING, "path": STRING}, ["owner", "repo", "path"]
                ),
                3,
                300,
            ),
            DemoTool(
                "push_files",
                "Commit files.",
                _schema(
                    {"owner": STRING, "repo": STRING, "branch": STRING, "files": {"type": "array"}},
                    ["owner", "repo", "branch", "files"],
                ),
                0.3,
                900,
                0.05,
                enabled=False,
            ),
        ),
        calls_per_hour=9,
        up_hours=26.5,
        events=(
            (26.6, "crashed", "exited with code 137 (out of memory)", "system"),
            (26.5, "restarted", "restarted after 1 failure", "system"),
        ),
    ),
    DemoServer(
        {
            "name": "filesystem",
            "display_name": "Filesystem",
            "description": "Read and write files under ~/projects",
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-filesystem", "/home/demo/projects"],
        },
        "running",
        (
            DemoTool("read_file", "Read a file.", _schema({"path": STRING}, ["path"]), 5, 4),
            DemoTool(
                "write_file",
                "Write a file.",
                _schema({"path": STRING, "content": STRING}, ["path", "content"]),
                1,
                6,
                0.01,
            ),
            DemoTool(
                "list_directory", "List a directory.", _schema({"path": STRING}, ["path"]), 3, 3
            ),
            DemoTool(
                "search_files",
                "Find files by pattern.",
                _schema({"path": STRING, "pattern": STRING}, ["path", "pattern"]),
                1,
                35,
            ),
            DemoTool(
                "move_file",
                "Move or rename.",
                _schema({"source": STRING, "destination": STRING}, ["source", "destination"]),
                0.2,
                5,
                bypass=True,
            ),
        ),
        calls_per_hour=11,
        up_hours=50.1,
        events=(
            (50.1, "started", "started filesystem (5 tools)", "system"),
            (3.2, "tools_changed", "tools changed: +search_files", "system"),
        ),
    ),
    DemoServer(
        {
            "name": "slack",
            "display_name": "Slack",
            "description": "Channels and messages of the team workspace",
            "transport": "streamable_http",
            "url": "https://mcp.example.com/slack/mcp",
            "headers": {"Authorization": "Bearer xoxb-demo"},
        },
        "degraded",
        (
            DemoTool(
                "post_message",
                "Post to a channel.",
                _schema({"channel": STRING, "text": STRING}, ["channel", "text"]),
                2,
                1450,
                0.12,
            ),
            DemoTool("list_channels", "Channels.", _schema({"limit": INTEGER}), 1, 900, 0.04),
            DemoTool(
                "get_history",
                "Recent messages.",
                _schema({"channel": STRING, "limit": INTEGER}, ["channel"]),
                2,
                1200,
                0.06,
            ),
        ),
        calls_per_hour=5,
        up_hours=8.0,
        failures=1,
        events=(
            (8.0, "started", "started slack (3 tools)", "system"),
            (0.4, "degraded", "health probe took 2.6s (over 2.0s)", "system"),
        ),
    ),
    DemoServer(
        {
            "name": "weather",
            "description": "Forecasts over SSE",
            "transport": "sse",
            "url": "https://weather.example.net/sse",
        },
        "running",
        (
            DemoTool(
                "forecast",
                "A forecast.",
                _schema({"city": STRING, "days": INTEGER}, ["city"]),
                3,
                180,
            ),
            DemoTool("alerts", "Weather alerts.", _schema({"region": STRING}, ["region"]), 1, 150),
        ),
        calls_per_hour=3,
        up_hours=120.0,
    ),
    DemoServer(
        {
            "name": "postgres",
            "display_name": "Postgres (analytics db)",
            "description": "Read-only SQL on the analytics replica",
            "command": "uvx",
            "args": ["mcp-server-postgres", "postgresql://reader@db.internal/analytics"],
        },
        "error",
        (
            DemoTool(
                "query", "Run a read-only query.", _schema({"sql": STRING}, ["sql"]), 1, 85, 0.28
            ),
            DemoTool("list_tables", "Tables.", _schema({}), 0.3, 30, 0.1),
        ),
        calls_per_hour=4,
        failures=2,
        last_error="connection refused: could not connect to 10.0.3.7:5432",
        active_until_hours=1.5,
        events=(
            (1.5, "crashed", "exited with code 1", "system"),
            (
                1.0,
                "start_failed",
                "connection refused: could not connect to 10.0.3.7:5432",
                "system",
            ),
        ),
    ),
    DemoServer(
        {
            "name": "legacy-crm",
            "description": "The old CRM bridge",
            "command": "/opt/crm/bin/mcp-bridge",
            "args": ["--stdio"],
        },
        "stopped",
        (
            DemoTool(
                "find_customer",
                "Look a customer up.",
                _schema({"email": STRING}, ["email"]),
                1,
                700,
                0.3,
            ),
        ),
        calls_per_hour=1,
        failures=3,
        disabled_reason="disabled after 3 failures in a row: exited with code 2",
        active_until_hours=30,
        events=(
            (30.2, "crashed", "exited with code 2", "system"),
            (30.1, "start_failed", "exited with code 2", "system"),
            (30.0, "auto_disabled", "disabled after 3 failures in a row", "system"),
        ),
    ),
    DemoServer(
        {
            "name": "jira",
            "display_name": "Jira",
            "description": "Tickets of the platform project",
            "command": "npx",
            "args": ["-y", "mcp-jira"],
            "enabled": False,
        },
        "stopped",
        (
            DemoTool("search_issues", "JQL search.", _schema({"jql": STRING}, ["jql"]), 2, 520),
            DemoTool(
                "create_issue",
                "New ticket.",
                _schema({"project": STRING, "summary": STRING}, ["project", "summary"]),
                1,
                640,
            ),
        ),
        calls_per_hour=2,
        active_until_hours=72,
        events=(
            (72.0, "disabled", "disabled jira", "tui:dana"),
            (72.0, "stopped", "stopped jira", "tui:dana"),
        ),
    ),
    DemoServer(
        {
            "name": "search",
            "display_name": "Brave Search",
            "description": "Web search",
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-brave-search"],
            "env": {"BRAVE_API_KEY": "demo-key"},
        },
        "starting",
        (
            DemoTool(
                "brave_web_search",
                "Search the web.",
                _schema({"query": STRING, "count": INTEGER}, ["query"]),
                1,
                820,
                0.02,
            ),
        ),
        calls_per_hour=2,
        active_until_hours=0.05,
        events=((0.01, "starting", "starting search", "tui:dana"),),
    ),
    DemoServer(
        {
            "name": "notes",
            "description": "Personal notes (being replaced)",
            "command": "python3",
            "args": ["-m", "notes_mcp"],
        },
        "stopping",
        (DemoTool("add_note", "Add a note.", _schema({"text": STRING}, ["text"]), 1, 12),),
        calls_per_hour=1,
        up_hours=400,
        events=((0.005, "stopping", "stopping notes", "tui:dana"),),
    ),
)


@dataclass
class DemoFleet:
    now: datetime
    servers: dict[str, str] = field(default_factory=dict)  # name -> id
    tools: dict[tuple[str, str], str] = field(default_factory=dict)  # (server, tool) -> id
    usage_rows: int = 0


def _daily_shape(moment: datetime) -> float:
    """More calls in working hours and on weekdays, never none."""
    hour = moment.hour + moment.minute / 60
    day = 0.35 + 0.65 * max(0.0, math.sin((hour - 7) / 14 * math.pi))
    return day * (0.45 if moment.weekday() >= 5 else 1.0)


async def build_demo(
    ops: LocalOperations,
    *,
    now: datetime = DEMO_NOW,
    usage_days: int = USAGE_DAYS,
    seed: int = SEED,
) -> DemoFleet:
    """Fill an empty data dir (the calculator may exist already) with the demo fleet."""
    rng = random.Random(seed)
    fleet = DemoFleet(now=now)
    existing = {server.name: server.id for server in await ops.list_servers()}
    for demo in DEMO_FLEET:
        name = demo.definition["name"]
        if name in existing:
            fleet.servers[name] = existing[name]
            continue
        created = await ops.create_server(
            demo.definition, actor="cli:demo", is_builtin=demo.builtin
        )
        fleet.servers[name] = created.id
    await _write_state(ops, fleet, rng)
    await _write_alerts_and_audit(ops, fleet)
    await _write_profiles(ops)
    await _write_tokens(ops, now)
    _write_logs(ops, fleet)
    fleet.usage_rows = await _write_usage(ops, fleet, rng, usage_days)
    return fleet


async def _write_profiles(ops: LocalOperations) -> None:
    """Two gateway profiles: what a coding agent and a research agent get to see."""
    await ops.create_profile(
        {
            "name": "coding",
            "description": "repositories and files, read and search only on disk",
            "servers": ["github", "filesystem"],
            "tools": ["github/*", "filesystem/read_*", "filesystem/search_*", "filesystem/list_*"],
        },
        actor="cli:demo",
    )
    await ops.create_profile(
        {"name": "research", "servers": ["search", "notes", "weather"], "tools": []},
        actor="cli:demo",
    )


# name, scope, profile, made (days ago), last used (minutes ago; None: never), made by
DEMO_TOKENS: tuple[tuple[str, str, str | None, int, int | None, str], ...] = (
    ("grafana", "read", None, 41, 2, "cli:ops"),
    ("oncall", "operator", None, 30, 95, "cli:ops"),
    ("claude-coding", "gateway", "coding", 12, 0, "cli:demo"),
    ("vscode", "gateway", None, 3, None, "cli:demo"),
)


async def _write_tokens(ops: LocalOperations, now: datetime) -> None:
    """Named API tokens with a history: made weeks ago, used moments ago, or never."""
    for name, scope, profile, made_days, used_minutes, by in DEMO_TOKENS:
        await ops.add_token({"name": name, "scope": scope, "profile": profile}, actor=by)
        used = None if used_minutes is None else now - timedelta(minutes=used_minutes)
        async with ops.db.session() as session:
            # Its audit entry, stamped by the real clock: moved to the demo's calendar.
            await session.execute(
                update(ServerEvent)
                .where(ServerEvent.created_at > now)
                .values(created_at=now - timedelta(days=made_days))
            )
            await session.execute(
                update(ApiToken)
                .where(ApiToken.name == name)
                .values(created_at=now - timedelta(days=made_days), last_used_at=used)
            )


async def _write_state(ops: LocalOperations, fleet: DemoFleet, rng: random.Random) -> None:
    now = fleet.now
    created_at = now - timedelta(days=USAGE_DAYS + 2)
    async with ops.db.session() as session:
        # The facade stamped its own events and times: move them to the demo's calendar.
        await session.execute(update(ServerEvent).values(created_at=created_at))
        for demo in DEMO_FLEET:
            name = demo.definition["name"]
            server_id = fleet.servers[name]
            row = await session.get(ToolServer, server_id)
            assert row is not None
            up = demo.status in ("running", "degraded", "stopping")
            row.status = demo.status
            row.created_at = row.updated_at = created_at
            row.consecutive_failures = demo.failures
            row.last_startup_error = demo.last_error
            row.disabled_reason = demo.disabled_reason
            if demo.disabled_reason:
                row.enabled = False
            row.last_startup_success = (
                now - timedelta(hours=demo.up_hours) if demo.up_hours is not None else None
            )
            row.last_health_check = (
                now - timedelta(seconds=rng.randint(4, 55))
                if up
                else now - timedelta(hours=demo.active_until_hours)
            )
            known = {
                tool.name: tool
                for tool in (
                    await session.execute(
                        select(ServerTool).where(ServerTool.server_id == server_id)
                    )
                ).scalars()
            }
            for tool in demo.tools:
                tool_row = known.get(tool.name)
                if tool_row is None:
                    tool_row = ServerTool(server_id=server_id, name=tool.name)
                    session.add(tool_row)
                tool_row.description = tool.description
                tool_row.input_schema = tool.schema
                tool_row.enabled = tool.enabled
                tool_row.bypass_when_unavailable = tool.bypass
                tool_row.is_available = up
                tool_row.discovered_at = tool_row.updated_at = created_at
                await session.flush()
                fleet.tools[(name, tool.name)] = tool_row.id
            session.add(
                ServerEvent(
                    server_id=server_id,
                    kind="tools_changed",
                    actor="system",
                    created_at=created_at,
                    message=f"discovered {len(demo.tools)} tools",
                )
            )
            for hours_ago, kind, message, actor in demo.events:
                session.add(
                    ServerEvent(
                        server_id=server_id,
                        kind=kind,
                        message=message,
                        actor=actor,
                        created_at=now - timedelta(hours=hours_ago),
                    )
                )


# Alerts as the engine leaves them: rule, server, tool (or None), severity, message, count,
# first and last seen (hours ago), acknowledged by, resolved (hours ago).
DEMO_ALERTS: tuple[
    tuple[str, str, str | None, str, str, int, float, float, str | None, float | None], ...
] = (
    (
        "server_down",
        "postgres",
        None,
        "critical",
        "postgres has been down for 90 min (limit 10 min)",
        9,
        1.35,
        0.02,
        None,
        None,
    ),
    (
        "error_rate",
        "slack",
        "post_message",
        "warning",
        "post_message of slack: 21 of 140 calls failed in the last 1h (15% > 10%)",
        3,
        2.5,
        0.1,
        None,
        None,
    ),
    (
        "server_auto_disabled",
        "legacy-crm",
        None,
        "critical",
        "legacy-crm was disabled after 3 failures in a row",
        1,
        30.0,
        30.0,
        "tui:dana",
        None,
    ),
    (
        "p95_latency",
        "github",
        "search_repositories",
        "warning",
        "search_repositories of github: p95 2.9s over 2.0s in the last 1h",
        4,
        27.0,
        26.0,
        "tui:dana",
        25.5,
    ),
)

# Changes people and the system made, with before/after as the facade records them (secrets
# masked): hours ago, server, kind, actor, message, details.
DEMO_AUDIT: tuple[tuple[float, str, str, str, str, dict[str, Any]], ...] = (
    (
        6.0,
        "github",
        "updated",
        "tui:dana",
        "updated github: timeout, env",
        {
            "before": {"timeout": 30, "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "********"}},
            "after": {"timeout": 60, "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "********"}},
            "secrets_changed": ["env"],
        },
    ),
    (
        5.0,
        "postgres",
        "limits_changed",
        "api:deploy-bot",
        "changed limits of postgres: max_rss_mb, max_concurrent_calls",
        {
            "before": {"max_rss_mb": None, "max_concurrent_calls": None},
            "after": {"max_rss_mb": 512.0, "max_concurrent_calls": 4},
        },
    ),
    (
        4.5,
        "slack",
        "tool_disabled",
        "cli:ops",
        "disabled tool get_history of slack",
        {"tool": "get_history", "before": {"enabled": True}, "after": {"enabled": False}},
    ),
    (
        4.4,
        "slack",
        "tool_enabled",
        "cli:ops",
        "enabled tool get_history of slack",
        {"tool": "get_history", "before": {"enabled": False}, "after": {"enabled": True}},
    ),
)


async def _write_alerts_and_audit(ops: LocalOperations, fleet: DemoFleet) -> None:
    now = fleet.now
    async with ops.db.session() as session:
        for (
            rule,
            server,
            tool,
            severity,
            message,
            count,
            first_h,
            last_h,
            acked_by,
            resolved_h,
        ) in DEMO_ALERTS:
            server_id = fleet.servers[server]
            tool_id = fleet.tools[(server, tool)] if tool else None
            session.add(
                Alert(
                    rule=rule,
                    subject=f"tool:{tool_id}" if tool_id else f"server:{server_id}",
                    server_id=server_id,
                    tool_id=tool_id,
                    severity=severity,
                    message=message,
                    status="resolved" if resolved_h is not None else "open",
                    count=count,
                    first_seen=now - timedelta(hours=first_h),
                    last_seen=now - timedelta(hours=last_h),
                    resolved_at=now - timedelta(hours=resolved_h) if resolved_h else None,
                    acknowledged_by=acked_by,
                    acknowledged_at=now - timedelta(hours=last_h) if acked_by else None,
                    notified_at=now - timedelta(hours=first_h),
                )
            )
        for hours_ago, server, kind, actor, message, details in DEMO_AUDIT:
            session.add(
                ServerEvent(
                    server_id=fleet.servers[server],
                    kind=kind,
                    message=message,
                    actor=actor,
                    details=details,
                    created_at=now - timedelta(hours=hours_ago),
                )
            )


# What the servers wrote on stderr, as the supervisor keeps it (one file per server); lines
# starting with "@" are the supervisor's own notes, which it stamps.
DEMO_LOGS: dict[str, tuple[tuple[float, str], ...]] = {
    "calculator": (
        (50.21, "@starting: python3 -m app.builtin.calculator"),
        (50.2, "@started, pid 48213"),
        (2.0, "INFO     Processing request of type ListToolsRequest"),
        (0.9, "INFO     Processing request of type CallToolRequest"),
        (0.5, "WARNING  evaluate: division by zero in '1/0'"),
        (0.1, "INFO     Processing request of type PingRequest"),
    ),
    "github": (
        (26.7, "GitHub MCP Server running on stdio"),
        (26.6, "fatal error: runtime: out of memory"),
        (26.6, "@exited with code 137"),
        (26.5, "@started, pid 51877"),
        (26.5, "GitHub MCP Server running on stdio"),
        (1.2, "rate limit: 4876 of 5000 requests left, resets in 52m"),
    ),
    "filesystem": (
        (50.1, "@started, pid 48230"),
        (50.1, "Secure MCP Filesystem Server running on stdio"),
        (50.1, "Allowed directories: [ '/home/demo/projects' ]"),
        (4.0, "Access denied - path outside allowed directories: /etc/passwd"),
    ),
    "postgres": (
        (1.5, "@exited with code 1"),
        (1.0, "@starting: uvx mcp-server-postgres postgresql://reader@db.internal/analytics"),
        (1.0, "Traceback (most recent call last):"),
        (1.0, '  File "mcp_server_postgres/server.py", line 41, in main'),
        (1.0, "    pool = await asyncpg.create_pool(dsn)"),
        (1.0, "ConnectionRefusedError: [Errno 111] Connect call failed ('10.0.3.7', 5432)"),
        (1.0, "@exited with code 1"),
    ),
    "legacy-crm": (
        (30.1, "mcp-bridge 0.9.2 starting"),
        (30.1, "error: CRM_API_URL is not set"),
        (30.1, "@exited with code 2"),
        (30.0, "@disabled after 3 failures in a row"),
    ),
    "notes": ((0.01, "@stopping"), (0.005, "notes-mcp: shutting down (SIGTERM)")),
}


def _write_logs(ops: LocalOperations, fleet: DemoFleet) -> None:
    logs = ops.settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    for name, entries in DEMO_LOGS.items():
        lines = []
        for hours_ago, line in entries:
            if line.startswith("@"):
                stamp = fleet.now - timedelta(hours=hours_ago)
                line = f"[tooldeck {stamp:%Y-%m-%d %H:%M:%S}] {line[1:]}"
            lines.append(line)
        (logs / f"{name}.log").write_text("\n".join(lines) + "\n")


# Who made the demo's calls. Chosen by the call's number, not by `rng`: another draw would
# change every figure after it, and every screenshot with them.
DEMO_GATEWAY_CLIENTS = ("claude-desktop", "claude-desktop", "cursor", "zed")
# The coding agent reaches only the "coding" profile's servers, as its demo session says.
DEMO_CODING_SERVERS = frozenset({"github", "filesystem"})
DEMO_CODING_CLIENTS = ("claude-code", "claude-desktop", "cursor")
DEMO_CLIENT_OF_SOURCE = {"api": "ci-runner", "cli": "tooldeck-cli", "tui": None}


def _demo_client(source: str, number: int, server: str) -> str | None:
    if source == "gateway":
        names = DEMO_CODING_CLIENTS if server in DEMO_CODING_SERVERS else DEMO_GATEWAY_CLIENTS
        return names[number % len(names)]
    return DEMO_CLIENT_OF_SOURCE[source]


# id, client, version, protocol, via, endpoint, token, connected (minutes ago), calls, errors
DEMO_SESSIONS: tuple[tuple[str, str, str, str, Transport, str, str | None, int, int, int], ...] = (
    ("s3", "claude-desktop", "0.14.2", "2025-06-18", "bridge", "aggregated", None, 192, 21, 1),
    ("s9", "claude-code", "2.0.31", "2025-11-25", "http", "profile coding", "claude-coding", 38,
     9, 0),
    ("s11", "cursor", "1.7.4", "2025-06-18", "http", "aggregated", "admin", 4, 0, 0),
)  # fmt: skip


def demo_sessions(now: datetime = DEMO_NOW) -> list[GatewaySession]:
    """The gateway sessions a daemon would report at the demo's moment."""
    return [
        GatewaySession(
            id=id_,
            client_name=name,
            client_version=version,
            protocol_version=protocol,
            transport=via,
            endpoint=endpoint,
            token_name=token,
            since=now - timedelta(minutes=minutes),
            calls=calls,
            errors=errors,
        )
        for id_, name, version, protocol, via, endpoint, token, minutes, calls, errors in (
            DEMO_SESSIONS
        )
    ]


async def _write_usage(
    ops: LocalOperations, fleet: DemoFleet, rng: random.Random, days: int
) -> int:
    """Usage through the real recorder, so raw rows, rollups and counters agree."""
    start = fleet.now - timedelta(days=days)
    hours = days * 24
    written = 0
    async with UsageRecorder(ops.db, ops.settings) as recorder:
        for demo in DEMO_FLEET:
            name = demo.definition["name"]
            weights = [tool.weight for tool in demo.tools]
            for hour in range(hours):
                moment = start + timedelta(hours=hour)
                if moment > fleet.now - timedelta(hours=demo.active_until_hours):
                    break
                expected = demo.calls_per_hour * _daily_shape(moment)
                calls = int(expected) + (1 if rng.random() < expected % 1 else 0)
                for _ in range(calls):
                    tool = rng.choices(demo.tools, weights)[0]
                    called_at = moment + timedelta(seconds=rng.random() * 3600)
                    if called_at >= fleet.now:
                        continue
                    # Errors cluster in the last two days for servers that broke recently.
                    rate = tool.error_rate * (3 if demo.failures and hour > hours - 48 else 1)
                    ok = rng.random() >= min(rate, 0.9)
                    latency = tool.latency_ms * rng.lognormvariate(0, 0.45) * (1 if ok else 2.5)
                    source = rng.choice(("gateway", "gateway", "gateway", "api", "cli", "tui"))
                    recorder.record(
                        UsageRecord(
                            server_id=fleet.servers[name],
                            tool_id=fleet.tools[(name, tool.name)],
                            tool_name=tool.name,
                            called_at=called_at,
                            response_time_ms=round(latency, 2),
                            success=ok,
                            error_message=None if ok else "upstream error",
                            source=source,
                            client_name=_demo_client(source, written, name),
                        )
                    )
                    written += 1
    return written

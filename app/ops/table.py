"""Each operation as the HTTP API serves it, declared once.

A row names a facade operation, whose signature, output model and docstring are the
`Operations` protocol's, and says how it travels over HTTP: method, path, body model, status,
whether it changes anything, whether it may run long, and the words the OpenAPI document
needs. The HTTP routes
(app/faces/http/routes.py) and `RemoteOperations` (app/ops/remote.py) are generated from these
rows; the few whose shape really differs are written by hand there, from the same row.

How an argument of the operation travels follows from the row:
- `fixed` arguments are implied by the path (`/tools/{id}/enable` is `enabled=True`);
- `actor` of an operation that `mutates` is the caller's name, a header;
- an argument named (through `names`) by a `{placeholder}` of the path is in the path;
- the body is one argument whole (`body_arg`), or its fields are arguments of the same names;
- every other argument is a query parameter.

What a request needs of its token (`access`, app/core/access.py) is declared per row too: a GET
is a read, and a change is an admin's unless the row says an operator may make it. A query that
reveals secrets (`SECRET_QUERIES`) is an admin's whatever the row says.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field

from app.core.access import Access, TokenCreate
from app.core.alert_rules import AlertRuleChanges
from app.core.periods import PERIOD_NAMES
from app.core.profiles import ProfileCreate, ProfileFields, ProfileUpdate
from app.core.schemas import (
    BulkToolServerOperation,
    CallSource,
    ConflictPolicy,
    LoginFinish,
    LoginStart,
    ServerLimitsSpec,
    ToolServerCreate,
    ToolServerUpdate,
)
from app.ops.protocol import Operations

Method = Literal["GET", "POST", "PUT", "DELETE"]
Place = Literal["fixed", "actor", "path", "body", "query"]

# ---- bodies the API has of its own ------------------------------------------------------------


class DisableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


class ToolUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    bypass_when_unavailable: bool | None = None


class ToolCallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] = Field(default_factory=dict, description="the tool's input")
    source: CallSource = Field("api", description="which face made the call, for usage records")
    client_name: str | None = Field(None, max_length=200)
    user: str | None = Field(None, max_length=200, description="default: the caller's actor")
    conversation_id: str | None = Field(None, max_length=200)


class PromptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, str] = Field(default_factory=dict)


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any] = Field(
        description="an MCP client configuration: {mcpServers: {...}} or VS Code's {servers: {...}}"
    )
    dry_run: bool = False
    on_conflict: ConflictPolicy = "skip"


class AutoDisable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int | None = Field(None, ge=1, le=1000, description="failed calls in a row; null: off")


# ---- the row --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryDoc:
    """What the OpenAPI document says of a query parameter, and the bounds it checks."""

    description: str | None = None
    ge: int | None = None
    le: int | None = None


@dataclass(frozen=True)
class OperationSpec:
    name: str  # the facade operation
    method: Method
    path: str
    tags: tuple[str, ...]
    body: type[BaseModel] | None = None
    body_arg: str | None = None  # the argument that is the whole body; else its fields are
    names: Mapping[str, str] = field(default_factory=dict)  # HTTP name -> argument name
    fixed: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, QueryDoc] = field(default_factory=dict)  # by HTTP name
    mutates: bool = False
    long: bool = False  # bounded by the server's own timeouts: no client-side timeout
    status: int = 200
    route_name: str | None = None  # the route's own name, where one operation has several
    custom_route: bool = False  # the route is written by hand in app/faces/http/routes.py
    access: Access | None = None  # what the token needs; default: read for a GET, else admin

    @property
    def needs(self) -> Access:
        if self.access is not None:
            return self.access
        return "read" if self.method == "GET" else "admin"

    @property
    def route(self) -> str:
        return self.route_name or self.name

    @cached_property
    def output(self) -> Any:
        """The answer's model: what the operation returns (None: nothing, a 204)."""
        returns = get_type_hints(getattr(Operations, self.name))["return"]
        return None if returns is type(None) else returns

    @cached_property
    def signature(self) -> inspect.Signature:
        """The operation's declared signature, without `self`."""
        declared = inspect.signature(getattr(Operations, self.name))
        return declared.replace(parameters=list(declared.parameters.values())[1:])

    @cached_property
    def path_names(self) -> tuple[str, ...]:
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.path) if name)

    def http_name(self, argument: str) -> str:
        for http, name in self.names.items():
            if name == argument:
                return http
        return argument

    def argument(self, http: str) -> str:
        return self.names.get(http, http)

    @cached_property
    def places(self) -> dict[str, Place]:
        """Where each argument of the operation travels (see the module's docstring)."""
        places: dict[str, Place] = {}
        body_fields = self.body.model_fields if self.body and not self.body_arg else {}
        for name in self.signature.parameters:
            http = self.http_name(name)
            if name in self.fixed:
                places[name] = "fixed"
            elif name == "actor" and self.mutates:
                places[name] = "actor"
            elif http in self.path_names:
                places[name] = "path"
            elif name == self.body_arg or http in body_fields:
                places[name] = "body"
            else:
                places[name] = "query"
        return places


# ---- the table ------------------------------------------------------------------------------

TOOLSERVERS = "/api/v1/toolservers"
SERVERS = f"{TOOLSERVERS}/servers"
SERVER = f"{SERVERS}/{{id}}"
TOOL = f"{TOOLSERVERS}/tools/{{id}}"
ALERTS = "/api/v1/alerts"
PROFILES = "/api/v1/gateway/profiles"
PROFILE = f"{PROFILES}/{{name}}"
TOKENS = "/api/v1/tokens"

BY_ID = {"id": "ref"}
SERVER_BY_ID = {"id": "server_ref"}
TOOL_BY_ID = {"id": "ref", "server": "server_ref"}
REVEAL = {"reveal": QueryDoc("show env and header values instead of a mask")}
# Query parameters that unmask secrets: only an admin token may send them.
SECRET_QUERIES = frozenset({"reveal", "include_secrets"})
TOOL_SERVER = {"server": QueryDoc("the server of a tool given by name rather than by id")}
WINDOW = {
    "period": QueryDoc(f"one of {', '.join(PERIOD_NAMES)}"),
    "start": QueryDoc("ISO 8601; with `end`, a window instead of `period`"),
    "end": QueryDoc("ISO 8601, the end of the window"),
}
LIMIT = QueryDoc("at most this many", ge=1, le=10_000)
DAYS = {"days": QueryDoc("the window in days", ge=1, le=3650)}
AUDIT_QUERY = {
    "server": QueryDoc("a server's name or id"),
    "since": QueryDoc("30m, 24h, 7d, 2w or ISO 8601"),
    "actor": QueryDoc("only this actor: a token's name, or the person it acted for"),
    "limit": LIMIT,
}


# fmt: off
# One row a few lines, like a table: the formatter would give every field a line of its own.


def _control(name: str, verb: str) -> OperationSpec:
    return OperationSpec(
        name, "POST", f"{SERVER}/{verb}", ("control",), names=BY_ID,
        mutates=True, long=True, access="operate",
    )


OPERATIONS: tuple[OperationSpec, ...] = (
    # ---- servers ----
    OperationSpec(
        "create_server", "POST", SERVERS, ("servers",), body=ToolServerCreate, body_arg="data",
        mutates=True, status=201,
    ),
    OperationSpec(
        "list_servers", "GET", SERVERS, ("servers",),
        query={"text": QueryDoc("match name, display name or description"), **REVEAL},
    ),
    # Before `/servers/{id}` so that a bulk request is never read as a server called "bulk".
    OperationSpec(
        "bulk", "POST", f"{SERVERS}/bulk", ("servers",), body=BulkToolServerOperation,
        body_arg="data", mutates=True, long=True,
    ),
    OperationSpec("get_server", "GET", SERVER, ("servers",), names=BY_ID, query=REVEAL),
    OperationSpec(
        "update_server", "PUT", SERVER, ("servers",), names=BY_ID, body=ToolServerUpdate,
        body_arg="data", mutates=True,
    ),
    OperationSpec(
        "delete_server", "DELETE", SERVER, ("servers",), names=BY_ID, mutates=True, status=204,
    ),
    _control("start_server", "start"),
    _control("stop_server", "stop"),
    _control("restart_server", "restart"),
    _control("refresh_tools", "refresh"),
    OperationSpec(
        "begin_login", "POST", f"{SERVER}/login", ("control",), names=BY_ID, body=LoginStart,
        mutates=True, long=True,
    ),
    OperationSpec(
        "finish_login", "POST", f"{SERVER}/login/complete", ("control",), names=BY_ID,
        body=LoginFinish, mutates=True, long=True,
    ),
    OperationSpec(
        "logout_server", "POST", f"{SERVER}/logout", ("control",), names=BY_ID, mutates=True,
    ),
    OperationSpec(
        "enable_server", "POST", f"{SERVER}/enable", ("control",), names=BY_ID, mutates=True,
        access="operate",
    ),
    # The route also takes an optional reason (a DisableRequest body).
    OperationSpec(
        "disable_server", "POST", f"{SERVER}/disable", ("control",), names=BY_ID, mutates=True,
        custom_route=True, access="operate",
    ),
    OperationSpec("list_tools", "GET", f"{SERVER}/tools", ("tools",), names=SERVER_BY_ID),
    OperationSpec(
        "list_events", "GET", f"{SERVER}/events", ("events",), names=SERVER_BY_ID,
        route_name="list_server_events",
    ),
    OperationSpec(
        "list_events", "GET", f"{TOOLSERVERS}/events", ("events",), names={"server": "server_ref"},
        query={"server": QueryDoc("one server's events only")},
    ),
    OperationSpec("check_health", "GET", f"{SERVER}/health", ("health",), names=BY_ID, long=True),
    OperationSpec("runtime_info", "GET", f"{SERVER}/runtime", ("health",), names=BY_ID),
    OperationSpec(
        "process_history", "GET", f"{SERVER}/process-history", ("health",), names=BY_ID,
        query={"since": QueryDoc("30m, 24h, 7d, 2w or ISO 8601 (default 1h)")},
    ),
    OperationSpec("process_samples", "GET", f"{TOOLSERVERS}/process-samples", ("health",)),
    OperationSpec("log_tail", "GET", f"{SERVER}/logs", ("health",), names=BY_ID),
    OperationSpec(
        "probe", "POST", f"{SERVER}/probe", ("health",), names={"id": "target"}, long=True,
        route_name="probe_server", custom_route=True, access="operate",
    ),
    OperationSpec(
        "probe", "POST", f"{TOOLSERVERS}/probe", ("health",), body=ToolServerCreate,
        body_arg="target", long=True, route_name="probe_definition", custom_route=True,
    ),
    OperationSpec(
        "server_metrics", "GET", f"{SERVER}/metrics", ("analytics",), names=BY_ID, query=WINDOW,
    ),
    OperationSpec(
        "tools_figures", "GET", f"{SERVER}/tools/figures", ("analytics",), names=SERVER_BY_ID,
        query=WINDOW,
    ),
    OperationSpec(
        "list_resources", "GET", f"{SERVER}/resources", ("mcp",), names=SERVER_BY_ID, long=True,
    ),
    OperationSpec(
        "read_resource", "GET", f"{SERVER}/resources/read", ("mcp",), names=SERVER_BY_ID,
        query={"uri": QueryDoc("the resource's URI")}, long=True,
    ),
    OperationSpec(
        "list_prompts", "GET", f"{SERVER}/prompts", ("mcp",), names=SERVER_BY_ID, long=True,
    ),
    OperationSpec(
        "get_prompt", "POST", f"{SERVER}/prompts/{{name}}", ("mcp",), names=SERVER_BY_ID,
        body=PromptRequest, long=True, access="operate",
    ),
    # ---- tools ----
    OperationSpec("get_tool", "GET", TOOL, ("tools",), names=TOOL_BY_ID, query=TOOL_SERVER),
    # The route also takes `enabled` (a ToolUpdate body).
    OperationSpec(
        "set_tool_bypass", "PUT", TOOL, ("tools",),
        names={**TOOL_BY_ID, "bypass_when_unavailable": "bypass"}, body=ToolUpdate,
        query=TOOL_SERVER, mutates=True, route_name="update_tool", custom_route=True,
        access="operate",
    ),
    OperationSpec(
        "set_tool_enabled", "POST", f"{TOOL}/enable", ("tools",), names=TOOL_BY_ID,
        fixed={"enabled": True}, query=TOOL_SERVER, mutates=True, route_name="enable_tool",
        access="operate",
    ),
    OperationSpec(
        "set_tool_enabled", "POST", f"{TOOL}/disable", ("tools",), names=TOOL_BY_ID,
        fixed={"enabled": False}, query=TOOL_SERVER, mutates=True, route_name="disable_tool",
        access="operate",
    ),
    # The route finds the tool's server when the query does not name it.
    OperationSpec(
        "call_tool", "POST", f"{TOOL}/call", ("tools",), names={"id": "tool"}, body=ToolCallRequest,
        query=TOOL_SERVER, mutates=True, long=True, custom_route=True, access="operate",
    ),
    OperationSpec(
        "tool_metrics", "GET", f"{TOOL}/metrics", ("analytics",),
        names={"id": "tool_ref", "server": "server_ref"}, query={**TOOL_SERVER, **WINDOW},
    ),
    OperationSpec("list_gateway_tools", "GET", "/api/v1/gateway/tools", ("mcp",)),
    # ---- gateway profiles ----
    OperationSpec("list_profiles", "GET", PROFILES, ("profiles",)),
    OperationSpec(
        "create_profile", "POST", PROFILES, ("profiles",), body=ProfileCreate, body_arg="data",
        mutates=True, status=201,
    ),
    # Before `/profiles/{name}`: a draft is never read as a profile called "preview".
    OperationSpec(
        "preview_profile_draft", "POST", f"{PROFILES}/preview", ("profiles",),
        body=ProfileFields, body_arg="data", access="operate",
    ),
    OperationSpec("get_profile", "GET", PROFILE, ("profiles",)),
    OperationSpec(
        "update_profile", "PUT", PROFILE, ("profiles",), body=ProfileUpdate, body_arg="data",
        mutates=True,
    ),
    OperationSpec(
        "delete_profile", "DELETE", PROFILE, ("profiles",), mutates=True, status=204,
    ),
    OperationSpec("preview_profile", "GET", f"{PROFILE}/preview", ("profiles",)),
    # ---- gateway clients ----
    OperationSpec(
        "clients", "GET", "/api/v1/gateway/clients", ("mcp",), query=WINDOW,
    ),
    # The name travels in the query: a client names itself, slashes included.
    OperationSpec(
        "client_detail", "GET", "/api/v1/gateway/clients/detail", ("mcp",),
        query={"name": QueryDoc("the client's name (clientInfo.name)"), **WINDOW},
    ),
    # ---- analytics and the scheduler ----
    OperationSpec(
        "analytics", "GET", "/api/v1/analytics/toolservers", ("analytics",), query=WINDOW,
    ),
    OperationSpec(
        "servers_figures", "GET", "/api/v1/analytics/servers", ("analytics",), query=WINDOW,
    ),
    OperationSpec(
        "time_series", "GET", "/api/v1/analytics/timeseries", ("analytics",),
        names={"server": "server_ref"},
        query={"server": QueryDoc("one server only (default: all)"), **WINDOW},
    ),
    OperationSpec("scheduler_jobs", "GET", "/api/v1/scheduler/jobs", ("scheduler",)),
    OperationSpec("list_nodes", "GET", "/api/v1/nodes", ("nodes",)),
    OperationSpec(
        "run_job", "POST", "/api/v1/scheduler/jobs/{name}/run", ("scheduler",), mutates=True,
        long=True, access="operate",
    ),
    # ---- import and export ----
    OperationSpec(
        "import_servers", "POST", f"{TOOLSERVERS}/import", ("servers",), body=ImportRequest,
        mutates=True,
    ),
    OperationSpec(
        "export_servers", "GET", f"{TOOLSERVERS}/export", ("servers",),
        query={"names": QueryDoc("servers to export (default: all)")},
    ),
    # ---- audit, alerts, limits, trim ----
    OperationSpec(
        "list_audit", "GET", "/api/v1/audit", ("audit",), names={"server": "server_ref"},
        query=AUDIT_QUERY,
    ),
    OperationSpec(
        "list_alerts", "GET", ALERTS, ("alerts",), names={"all": "include_resolved"},
        query={"all": QueryDoc("resolved alerts too"), "limit": LIMIT},
    ),
    OperationSpec(
        "evaluate_alerts", "POST", f"{ALERTS}/evaluate", ("alerts",), mutates=True,
        access="operate",
    ),
    OperationSpec(
        "ack_alert", "POST", f"{ALERTS}/{{id}}/ack", ("alerts",), names={"id": "alert_id"},
        mutates=True, access="operate",
    ),
    OperationSpec("alert_rules", "GET", f"{ALERTS}/rules", ("alerts",)),
    OperationSpec(
        "set_alert_rules", "PUT", f"{ALERTS}/rules", ("alerts",), body=AlertRuleChanges,
        body_arg="data", mutates=True,
    ),
    OperationSpec(
        "get_server_limits", "GET", f"{SERVER}/limits", ("limits",), names=BY_ID,
        route_name="get_limits",
    ),
    OperationSpec(
        "set_server_limits", "PUT", f"{SERVER}/limits", ("limits",), names=BY_ID,
        body=ServerLimitsSpec, body_arg="data", mutates=True, route_name="set_limits",
    ),
    OperationSpec(
        "set_tool_auto_disable", "PUT", f"{TOOL}/auto-disable", ("tools",), names=TOOL_BY_ID,
        body=AutoDisable, query={"server": QueryDoc("the tool's server, for a tool name")},
        mutates=True, route_name="set_auto_disable",
    ),
    OperationSpec(
        "trim_suggestions", "GET", f"{TOOLSERVERS}/trim", ("tools",),
        query={**DAYS, "end": QueryDoc("ISO 8601, the end of the window (default: now)")},
    ),
    OperationSpec(
        "disable_unused_tools", "POST", f"{TOOLSERVERS}/trim/disable", ("tools",), query=DAYS,
        mutates=True,
    ),
    # ---- API tokens: an admin's, listing included ----
    OperationSpec("list_tokens", "GET", TOKENS, ("tokens",), access="admin"),
    OperationSpec(
        "add_token", "POST", TOKENS, ("tokens",), body=TokenCreate, body_arg="data",
        mutates=True, status=201,
    ),
    OperationSpec(
        "revoke_token", "DELETE", f"{TOKENS}/{{name}}", ("tokens",), mutates=True, status=204,
    ),
)
# fmt: on

"""The operations facade over HTTP, for a CLI or dashboard attached to a running daemon.

Every public method has the name, signature and return model of its `Operations` twin and
raises the same `app.core.errors` exceptions (rebuilt from the daemon's JSON error bodies), so a
caller cannot tell which one it holds. A contract test runs one suite against both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import mcp_types as types
from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from app.core import errors
from app.core.errors import InvalidInput, TooldeckError, Unavailable
from app.core.interchange import parse_document
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
from app.core.settings import Settings
from app.ops.protocol import ReadOperations
from app.ops.remote_alerts import RemoteAlertOperations
from storage.analytics import DEFAULT_BUCKETS, DEFAULT_PERIOD

TOOLSERVERS = "/api/v1/toolservers"
ACTOR_HEADER = "X-Tooldeck-Actor"
DEFAULT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
# Starting a server or calling a tool is bounded by the server's own timeouts (up to an hour),
# which the daemon enforces; the client must not give up first.
LONG_TIMEOUT = httpx2.Timeout(None, connect=CONNECT_TIMEOUT_S)

T = TypeVar("T")


def _error_classes() -> dict[str, type[TooldeckError]]:
    found: dict[str, type[TooldeckError]] = {}
    pending: list[type[TooldeckError]] = [TooldeckError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.__name__, cls)
        pending.extend(cls.__subclasses__())
    return found


_BY_STATUS: dict[int, type[TooldeckError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
}


def error_from_response(response: httpx2.Response) -> TooldeckError:
    """The exception the daemon raised, rebuilt from its JSON body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return Unavailable(f"the daemon answered {response.status_code} without an error body")
    field = body.get("field") if isinstance(body.get("field"), str) else None
    message: str = body["message"]
    if field and message.startswith(f"{field}: "):
        # The body's message is str(exc), which already names the field; don't name it twice.
        message = message.removeprefix(f"{field}: ")
    fallback = _BY_STATUS.get(response.status_code, Unavailable)
    cls = _error_classes().get(str(body.get("error")), fallback)
    try:
        return cls(message, field=field)
    except TypeError:  # a subclass with a constructor of its own, such as AlreadyRunning
        return fallback(message, field=field)


def _segment(ref: str) -> str:
    # Dots are escaped too: a name like ".." must reach the daemon as a name, not a path step.
    return quote(ref, safe="").replace(".", "%2E")


def _payload(data: BaseModel | dict[str, Any], *, exclude_unset: bool = False) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_unset=exclude_unset)
    return to_jsonable_python(data)


class RemoteOperations(RemoteAlertOperations):
    """`Operations` over the daemon's HTTP API."""

    # Nothing here hears the daemon's changes or alerts: faces attached to it refresh on a timer.
    changes = None
    alerts = None
    call_latency = None
    # A daemon always runs a supervisor.
    supervised = True

    @asynccontextmanager
    async def open_reader(self) -> AsyncIterator[ReadOperations]:
        yield self

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        settings: Settings | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx2.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx2.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            # The daemon is on this machine or behind an SSH tunnel: never via a proxy.
            trust_env=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> RemoteOperations:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- transport -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        actor: str | None = None,
        long: bool = False,
    ) -> Any:
        """One call to the daemon: the decoded JSON answer, or the daemon's error raised."""
        headers = {ACTOR_HEADER: actor} if actor else None
        given = (params or {}).items()
        query = {key: _query_value(value) for key, value in given if value is not None}
        try:
            response = await self._client.request(
                method,
                path,
                params=query,
                json=json,
                headers=headers,
                timeout=LONG_TIMEOUT if long else httpx2.USE_CLIENT_DEFAULT,
            )
        except httpx2.TimeoutException:
            raise Unavailable(f"the daemon at {self.base_url} did not answer in time") from None
        except httpx2.TransportError as exc:
            raise Unavailable(f"cannot reach the daemon at {self.base_url} ({exc})") from None
        if response.status_code >= 400:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def _get(self, model: type[T] | Any, path: str, **kwargs: Any) -> T:
        return _parse(model, await self.request("GET", path, **kwargs))

    async def _post(self, model: type[T] | Any, path: str, **kwargs: Any) -> T:
        return _parse(model, await self.request("POST", path, **kwargs))

    # ---- servers: create, read, update, delete -------------------------------------------------

    async def create_server(
        self, data: ToolServerCreate | dict[str, Any], *, actor: str, is_builtin: bool = False
    ) -> ToolServerResponse:
        if is_builtin:
            raise InvalidInput("built-in servers are seeded by the daemon itself", field="name")
        return await self._post(
            ToolServerResponse, f"{TOOLSERVERS}/servers", json=_payload(data), actor=actor
        )

    async def get_server(self, ref: str, *, reveal: bool = False) -> ToolServerResponse:
        return await self._get(
            ToolServerResponse,
            f"{TOOLSERVERS}/servers/{_segment(ref)}",
            params={"reveal": reveal or None},
        )

    async def list_servers(
        self,
        *,
        status: str | None = None,
        enabled: bool | None = None,
        text: str | None = None,
        reveal: bool = False,
    ) -> list[ToolServerResponse]:
        return await self._get(
            list[ToolServerResponse],
            f"{TOOLSERVERS}/servers",
            params={"status": status, "enabled": enabled, "text": text, "reveal": reveal or None},
        )

    async def update_server(
        self, ref: str, data: ToolServerUpdate | dict[str, Any], *, actor: str
    ) -> ToolServerResponse:
        return _parse(
            ToolServerResponse,
            await self.request(
                "PUT",
                f"{TOOLSERVERS}/servers/{_segment(ref)}",
                json=_payload(data, exclude_unset=True),
                actor=actor,
            ),
        )

    async def delete_server(self, ref: str, *, actor: str) -> None:
        await self.request("DELETE", f"{TOOLSERVERS}/servers/{_segment(ref)}", actor=actor)

    async def set_server_enabled(
        self, ref: str, enabled: bool, *, actor: str, reason: str | None = None
    ) -> ToolServerResponse:
        verb = "enable" if enabled else "disable"
        body = {"reason": reason} if reason and not enabled else None
        return await self._post(
            ToolServerResponse,
            f"{TOOLSERVERS}/servers/{_segment(ref)}/{verb}",
            json=body,
            actor=actor,
        )

    async def enable_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self.set_server_enabled(ref, True, actor=actor)

    async def disable_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self.set_server_enabled(ref, False, actor=actor)

    # ---- tools ---------------------------------------------------------------------------------

    async def list_tools(self, server_ref: str) -> list[ServerToolResponse]:
        return await self._get(
            list[ServerToolResponse], f"{TOOLSERVERS}/servers/{_segment(server_ref)}/tools"
        )

    async def get_tool(self, ref: str, server_ref: str | None = None) -> ServerToolResponse:
        return await self._get(
            ServerToolResponse,
            f"{TOOLSERVERS}/tools/{_segment(ref)}",
            params={"server": server_ref},
        )

    async def set_tool_enabled(
        self, ref: str, enabled: bool, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        verb = "enable" if enabled else "disable"
        return await self._post(
            ServerToolResponse,
            f"{TOOLSERVERS}/tools/{_segment(ref)}/{verb}",
            params={"server": server_ref},
            actor=actor,
        )

    async def set_tool_bypass(
        self, ref: str, bypass: bool, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        return _parse(
            ServerToolResponse,
            await self.request(
                "PUT",
                f"{TOOLSERVERS}/tools/{_segment(ref)}",
                params={"server": server_ref},
                json={"bypass_when_unavailable": bypass},
                actor=actor,
            ),
        )

    # ---- events --------------------------------------------------------------------------------

    async def list_events(
        self, server_ref: str | None = None, *, kind: str | None = None, limit: int = 100
    ) -> list[ServerEventResponse]:
        if server_ref is not None:
            path = f"{TOOLSERVERS}/servers/{_segment(server_ref)}/events"
        else:
            path = f"{TOOLSERVERS}/events"
        return await self._get(
            list[ServerEventResponse], path, params={"kind": kind, "limit": limit}
        )

    # ---- runtime operations --------------------------------------------------------------------

    async def start_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._control(ref, "start", actor)

    async def stop_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._control(ref, "stop", actor)

    async def restart_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._control(ref, "restart", actor)

    async def refresh_tools(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._control(ref, "refresh", actor)

    async def _control(self, ref: str, verb: str, actor: str) -> ToolServerResponse:
        return await self._post(
            ToolServerResponse,
            f"{TOOLSERVERS}/servers/{_segment(ref)}/{verb}",
            actor=actor,
            long=True,
        )

    async def check_health(self, ref: str) -> ServerHealth:
        return await self._get(
            ServerHealth, f"{TOOLSERVERS}/servers/{_segment(ref)}/health", long=True
        )

    async def runtime_info(self, ref: str) -> ServerRuntimeInfo:
        return await self._get(ServerRuntimeInfo, f"{TOOLSERVERS}/servers/{_segment(ref)}/runtime")

    async def log_tail(self, ref: str, lines: int = 100) -> list[str]:
        return await self._get(
            list[str], f"{TOOLSERVERS}/servers/{_segment(ref)}/logs", params={"lines": lines}
        )

    async def scheduler_jobs(self) -> list[JobStatus]:
        return await self._get(list[JobStatus], "/api/v1/scheduler/jobs")

    async def run_job(self, name: str) -> JobStatus:
        return await self._post(
            JobStatus, f"/api/v1/scheduler/jobs/{_segment(name)}/run", long=True
        )

    async def probe(self, target: str | ToolServerCreate | dict[str, Any]) -> ProbeReport:
        if isinstance(target, str):
            path, body = f"{TOOLSERVERS}/servers/{_segment(target)}/probe", None
        else:
            path, body = f"{TOOLSERVERS}/probe", _payload(target)
        return await self._post(ProbeReport, path, json=body, long=True)

    # ---- tool calls ----------------------------------------------------------------------------

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
        body = {
            "arguments": arguments if arguments is not None else {},
            "source": source,
            "client_name": client_name,
            "user": user,
            "conversation_id": conversation_id,
        }
        return await self._post(
            ToolCallResult,
            f"{TOOLSERVERS}/tools/{_segment(tool)}/call",
            params={"server": server},
            json=to_jsonable_python(body),
            long=True,
        )

    # ---- MCP resources and prompts of a server, and the gateway's tools ------------------------

    async def list_gateway_tools(self) -> list[ServerToolResponse]:
        return await self._get(list[ServerToolResponse], "/api/v1/gateway/tools")

    async def list_resources(self, server_ref: str) -> list[types.Resource]:
        return await self._get(
            list[types.Resource],
            f"{TOOLSERVERS}/servers/{_segment(server_ref)}/resources",
            long=True,
        )

    async def read_resource(self, server_ref: str, uri: str) -> types.ReadResourceResult:
        return await self._get(
            types.ReadResourceResult,
            f"{TOOLSERVERS}/servers/{_segment(server_ref)}/resources/read",
            params={"uri": uri},
            long=True,
        )

    async def list_prompts(self, server_ref: str) -> list[types.Prompt]:
        return await self._get(
            list[types.Prompt], f"{TOOLSERVERS}/servers/{_segment(server_ref)}/prompts", long=True
        )

    async def get_prompt(
        self, server_ref: str, name: str, arguments: dict[str, str]
    ) -> types.GetPromptResult:
        return await self._post(
            types.GetPromptResult,
            f"{TOOLSERVERS}/servers/{_segment(server_ref)}/prompts/{_segment(name)}",
            json={"arguments": to_jsonable_python(arguments)},
            long=True,
        )

    # ---- analytics -----------------------------------------------------------------------------

    async def server_metrics(
        self,
        ref: str,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolServerMetrics:
        return await self._get(
            ToolServerMetrics,
            f"{TOOLSERVERS}/servers/{_segment(ref)}/metrics",
            params={"period": period, "start": start, "end": end},
        )

    async def tool_metrics(
        self,
        tool_ref: str,
        server_ref: str | None = None,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolMetrics:
        return await self._get(
            ToolMetrics,
            f"{TOOLSERVERS}/tools/{_segment(tool_ref)}/metrics",
            params={"server": server_ref, "period": period, "start": start, "end": end},
        )

    async def analytics(
        self,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolServerAnalytics:
        return await self._get(
            ToolServerAnalytics,
            "/api/v1/analytics/toolservers",
            params={"period": period, "start": start, "end": end},
        )

    async def time_series(
        self,
        server_ref: str | None = None,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
        buckets: int = DEFAULT_BUCKETS,
    ) -> UsageTimeSeries:
        params = {
            "server": server_ref,
            "period": period,
            "start": start,
            "end": end,
            "buckets": buckets,
        }
        return await self._get(UsageTimeSeries, "/api/v1/analytics/timeseries", params=params)

    # ---- bulk ----------------------------------------------------------------------------------

    async def bulk(
        self, data: BulkToolServerOperation | dict[str, Any], *, actor: str
    ) -> BulkOperationResult:
        return await self._post(
            BulkOperationResult,
            f"{TOOLSERVERS}/servers/bulk",
            json=_payload(data),
            actor=actor,
            long=True,
        )

    # ---- import and export ---------------------------------------------------------------------

    async def import_servers(
        self,
        document: Any,
        *,
        dry_run: bool = False,
        on_conflict: ConflictPolicy = "skip",
        actor: str,
    ) -> ImportReport:
        if not isinstance(document, dict):
            # The daemon's body can only carry an object; say what the facade would say.
            parse_document(document)
        body = {"document": document, "dry_run": dry_run, "on_conflict": on_conflict}
        return await self._post(
            ImportReport, f"{TOOLSERVERS}/import", json=to_jsonable_python(body), actor=actor
        )

    async def export_servers(
        self,
        names: Sequence[str] | None = None,
        *,
        format: ExportFormat = "claude",
        include_secrets: bool = False,
    ) -> dict[str, Any]:
        params = {
            "names": list(names) if names else None,
            "format": format,
            "include_secrets": include_secrets or None,
        }
        return await self._get(dict[str, Any], f"{TOOLSERVERS}/export", params=params)

    # ---- built-in servers ----------------------------------------------------------------------

    async def seed_builtin_servers(self) -> list[str]:
        """The daemon seeds its own built-ins when it starts: nothing is left to do here."""
        return []


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _parse(model: Any, data: Any) -> Any:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter.validate_python(data)

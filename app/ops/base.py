"""Shared pieces of the operations facade: what it needs from the runtime, lookups, masking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.changes import Change, ChangeBus
from app.core.errors import NotFound, NotRunning, invalid_from_pydantic
from app.core.schemas import (
    MASK,
    JobStatus,
    ServerHealth,
    ServerRuntimeInfo,
    ServerToolResponse,
    ToolServerResponse,
)
from app.core.scrub import mask_args, mask_url, restore_masked_args, restore_masked_url
from app.core.settings import Settings
from app.runtime.call_latency import CallLatency
from app.runtime.peers import PeerLinks
from storage.db import Database
from storage.models import ANY_NODE, ServerTool, ToolServer
from storage.queries import find_server

ModelT = TypeVar("ModelT", bound=BaseModel)


class Runtime(Protocol):
    """What the facade needs from the supervisor. Without one, runtime operations refuse."""

    async def start(self, server_id: str, *, actor: str) -> None: ...
    async def stop(self, server_id: str, *, actor: str) -> None: ...
    async def restart(self, server_id: str, *, actor: str) -> None: ...
    async def refresh_tools(self, server_id: str, *, actor: str) -> int: ...
    async def intent_changed(self, server_id: str) -> None: ...
    async def forget(self, server_id: str) -> None: ...
    async def check_health(self, server_id: str) -> ServerHealth: ...
    async def runtime_info(self, server_id: str) -> ServerRuntimeInfo: ...
    async def log_tail(self, server_id: str, lines: int = 100) -> list[str]: ...
    def is_running(self, server_id: str) -> bool: ...
    async def call_tool(
        self, server_id: str, tool_name: str, arguments: dict[str, Any], *, timeout_s: float
    ) -> Any: ...
    async def upstream(
        self,
        server_id: str,
        request: Callable[[Any], Awaitable[Any]],
        *,
        what: str,
        timeout_s: float,
    ) -> Any: ...


class JobRunner(Protocol):
    """What the facade needs from the scheduler."""

    def status(self) -> list[JobStatus]: ...
    async def run_now(self, name: str) -> JobStatus: ...


class UsageSink(Protocol):
    """The usage recorder (app.runtime.usage.UsageRecorder): takes a record without waiting."""

    def record(self, record: Any) -> None: ...


def mask_secrets(values: dict[str, str]) -> dict[str, str]:
    return {key: MASK for key in values}


def keep_masked(new: dict[str, str], old: dict[str, str]) -> dict[str, str]:
    """A masked value sent back (by an edit form or a PUT of a GET) means "unchanged"."""
    return {key: old.get(key, "") if value == MASK else value for key, value in new.items()}


MASKABLE = frozenset({"env", "headers", "url", "args"})


def keep_masked_fields(changes: dict[str, Any], row: Any) -> dict[str, Any]:
    """`changes` to a server with every masked value sent back (env, headers, URL credentials,
    secret args) replaced by the stored one: a form or a PUT of a GET means "unchanged"."""
    kept = dict(changes)
    for field in ("env", "headers"):
        if kept.get(field) is not None:
            kept[field] = keep_masked(kept[field], getattr(row, field) or {})
    if kept.get("url") is not None:
        kept["url"] = restore_masked_url(kept["url"], row.url)
    if kept.get("args") is not None:
        kept["args"] = restore_masked_args(kept["args"], row.args or [])
    return kept


# The server columns a response carries, read as plain values (see `server_responses`).
RESPONSE_COLUMNS = tuple(
    column
    for name, column in ToolServer.__table__.columns.items()
    if name in ToolServerResponse.model_fields
)


def server_response(
    row: ToolServer, counts: tuple[int, int] = (0, 0), *, reveal: bool = False
) -> ToolServerResponse:
    values = {column.key: getattr(row, column.key) for column in RESPONSE_COLUMNS}
    return response_of_values(values, counts, reveal=reveal)


def response_of_values(
    values: dict[str, Any], counts: tuple[int, int], *, reveal: bool
) -> ToolServerResponse:
    """A response validated once from a row's values: assigning fields after validation costs
    more than the validation itself, which a thousand servers read every tick would feel."""
    values["tools_count"], values["enabled_tools_count"] = counts
    # Whatever a server wrote reached this row scrubbed already; the row's own values are
    # masked by shape unless asked for.
    if not reveal:
        values["env"] = mask_secrets(values["env"])
        values["headers"] = mask_secrets(values["headers"])
        values["url"] = mask_url(values["url"])
        values["args"] = mask_args(values["args"])
    return ToolServerResponse.model_validate(values)


def with_placement(values: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A new server's fields with its placement settled: a stdio server's command exists on
    the node that created it; a remote server is reachable from any node."""
    if values.get("placement") is None:
        stdio = values.get("transport", "stdio") == "stdio"
        values = {**values, "placement": settings.node_name if stdio else ANY_NODE}
    return values


def validated(model: type[ModelT], data: Any) -> ModelT:
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


class OpsBase:
    """What every part of the facade shares: the database, settings, runtime and lookups."""

    db: Database
    settings: Settings
    runtime: Runtime | None
    scheduler: JobRunner | None
    recorder: UsageSink | None
    changes: ChangeBus
    call_latency: CallLatency
    peers: PeerLinks | None

    # ---- lookups -----------------------------------------------------------------------

    async def _server(self, session: AsyncSession, ref: str) -> ToolServer:
        row = await find_server(session, ref)
        if row is None:
            raise NotFound(f"no server {ref!r}")
        return row

    async def _tool(self, session: AsyncSession, ref: str, server_ref: str | None) -> ServerTool:
        if server_ref is not None:
            server = await self._server(session, server_ref)
            query = select(ServerTool).where(
                ServerTool.server_id == server.id,
                or_(ServerTool.name == ref, ServerTool.id == ref),
            )
        else:
            query = select(ServerTool).where(ServerTool.id == ref)
        tool = (await session.execute(query)).scalars().first()
        if tool is None:
            where = f" on server {server_ref!r}" if server_ref else ""
            raise NotFound(f"no tool {ref!r}{where}")
        return tool

    @staticmethod
    def _tool_response(tool: ServerTool, server_name: str | None) -> ServerToolResponse:
        response = ServerToolResponse.model_validate(tool)
        response.server_name = server_name
        return response

    async def _intent_changed(self, server_id: str) -> None:
        self.changes.publish(Change.SERVERS, server_id)
        if self.runtime is not None:
            await self.runtime.intent_changed(server_id)

    @property
    def single_node(self) -> bool:
        """Whether this facade's view is one node's: SQLite, or a supervisor here that is no
        node of a fleet (it runs every server). Else placement and leases say who runs what."""
        if self.db.is_sqlite:
            return True
        return self.runtime is not None and getattr(self.runtime, "fleet", None) is None

    def _require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise NotRunning(
                "no supervisor is running: start `tooldeck --headless` or the dashboard"
            )
        return self.runtime

    def _require_scheduler(self) -> JobRunner:
        if self.scheduler is None:
            raise NotRunning(
                "no scheduler is running: start `tooldeck --headless` or the dashboard"
            )
        return self.scheduler

"""What the gateway's router asks of the operations: decisions from memory, on-demand starts,
and metering.

The router's call path must not touch the database: every call would pay a round trip. This
port keeps a snapshot of the intent the router needs (servers, tools, profiles) and reloads it
whenever the change bus says something changed, so a person's switch takes effect for agents
a moment after it is saved. A call that reaches no database: a dictionary lookup for the
decision, one append for its usage record (written later by the batched writer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.core.changes import Change
from app.core.errors import Conflict, NotRunning, StartFailed
from app.core.profiles import Selection
from app.core.settings import Settings
from app.core.usage_record import Outcome, UsageRecord
from app.runtime.call_gates import CallGates
from app.runtime.connections import Connection, ConnectionRegistry
from storage.models import GatewayProfile, ServerTool, ToolServer

logger = logging.getLogger(__name__)

# Changes come in bursts (a start discovers tools, then reports running): reload once.
RELOAD_DELAY_S = 0.05
SOURCE = "gateway"


@dataclass(slots=True)
class ServerIntent:
    id: str
    name: str
    enabled: bool
    auto_start: bool
    call_timeout_s: float
    disabled_reason: str | None


@dataclass(slots=True)
class ToolIntent:
    id: str
    server_id: str
    name: str
    enabled: bool
    is_available: bool
    bypass_when_unavailable: bool
    auto_disable_after: int | None
    # The tool as tools/list sends it, from the catalogue: listed while its server is stopped.
    listing: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Snapshot:
    servers: dict[str, ServerIntent]  # by name
    by_id: dict[str, ServerIntent]
    tools: dict[tuple[str, str], ToolIntent]  # by (server id, tool name)
    profiles: dict[str, Selection]


EMPTY = Snapshot({}, {}, {}, {})
ReloadListener = Callable[[set[str | None], set[Change]], None]


class GatewayPort:
    """The router's window on the operations layer (see the module doc)."""

    def __init__(self, ops: Any) -> None:
        runtime = ops.runtime
        if runtime is None:
            raise NotRunning("the gateway needs a supervisor in this process")
        self.ops = ops
        self.settings: Settings = ops.settings
        self.runtime = runtime
        self.connections: ConnectionRegistry = runtime.connections
        self.gates: CallGates = runtime.call_gates
        self.snapshot = EMPTY
        self._listeners: list[ReloadListener] = []
        self._pending_ids: set[str | None] = set()
        self._pending_kinds: set[Change] = set()
        self._reload: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self.snapshot = await self._load()
        self._unsubscribe = self.ops.changes.subscribe(self._changed)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._reload is not None:
            self._reload.cancel()
        for task in self._tasks:
            task.cancel()

    def on_reload(self, listener: ReloadListener) -> None:
        """`listener(server ids, kinds)` after each reload; a None id means any server."""
        self._listeners.append(listener)

    # ---- the snapshot -------------------------------------------------------------------

    def _changed(self, change: Change, server_id: str | None) -> None:
        self._pending_ids.add(server_id)
        self._pending_kinds.add(change)
        if self._reload is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._reload = loop.call_later(RELOAD_DELAY_S, self._spawn_reload)

    def _spawn_reload(self) -> None:
        self._reload = None
        ids, kinds = self._pending_ids, self._pending_kinds
        self._pending_ids, self._pending_kinds = set(), set()
        self.spawn(self._reload_now(ids, kinds))

    async def _reload_now(self, ids: set[str | None], kinds: set[Change]) -> None:
        try:
            self.snapshot = await self._load()
        except Exception:
            logger.exception("reloading the gateway's view of the fleet failed")
            return
        for listener in list(self._listeners):
            try:
                listener(ids, kinds)
            except Exception:
                logger.exception("a gateway reload listener failed")

    async def reload(self) -> None:
        """Reload at once (tests, and a start on demand that needs the fresh catalogue)."""
        self.snapshot = await self._load()

    async def _load(self) -> Snapshot:
        async with self.ops.db.read() as session:
            servers = (await session.execute(select(ToolServer))).scalars().all()
            tools = (await session.execute(select(ServerTool))).scalars().all()
            profiles = (await session.execute(select(GatewayProfile))).scalars().all()
            by_id = {
                row.id: ServerIntent(
                    row.id,
                    row.name,
                    row.enabled,
                    row.auto_start,
                    row.call_timeout_s,
                    row.disabled_reason,
                )
                for row in servers
            }
            tool_intents = {
                (row.server_id, row.name): ToolIntent(
                    row.id,
                    row.server_id,
                    row.name,
                    row.enabled,
                    row.is_available,
                    row.bypass_when_unavailable,
                    row.auto_disable_after,
                    catalogue_listing(row),
                )
                for row in tools
            }
            selections = {row.name: Selection.of(row) for row in profiles}
        return Snapshot(
            {server.name: server for server in by_id.values()}, by_id, tool_intents, selections
        )

    # ---- decisions ----------------------------------------------------------------------

    def server(self, name: str) -> ServerIntent | None:
        return self.snapshot.servers.get(name)

    def enabled_servers(self) -> list[ServerIntent]:
        return [server for server in self.snapshot.servers.values() if server.enabled]

    def tool(self, server_id: str, name: str) -> ToolIntent | None:
        return self.snapshot.tools.get((server_id, name))

    def tools_of(self, server_id: str) -> list[ToolIntent]:
        return [tool for key, tool in self.snapshot.tools.items() if key[0] == server_id]

    def profile(self, name: str) -> Selection | None:
        return self.snapshot.profiles.get(name)

    def connection(self, server_id: str) -> Connection | None:
        return self.connections.get(server_id)

    async def ensure_running(self, server: ServerIntent) -> Connection:
        """The server's connection, starting it on demand if it starts on demand."""
        conn = self.connections.get(server.id)
        if conn is not None:
            return conn
        peers = getattr(self.ops, "peers", None)
        if peers is not None:
            # Another node may run it: its link, once up, or why it cannot be reached.
            if (conn := await peers.connection(server.id)) is not None:
                return conn
            if (elsewhere := peers.why_unreachable(server.id)) is not None:
                raise NotRunning(elsewhere)
        if not server.enabled:
            why = f" ({server.disabled_reason})" if server.disabled_reason else ""
            raise Conflict(f"server {server.name} is disabled{why}")
        if not server.auto_start:
            raise NotRunning(
                f"{server.name} is not running and does not start on demand (auto-start is off)"
            )
        try:
            await self.runtime.start(server.id, actor=f"{SOURCE}:on-demand")
        except StartFailed as exc:
            raise NotRunning(str(exc)) from None
        await self.reload()
        conn = self.connections.get(server.id)
        if conn is None:
            raise NotRunning(f"{server.name} started but its connection is gone")
        return conn

    # ---- metering -----------------------------------------------------------------------

    def record(
        self,
        server: ServerIntent,
        tool: ToolIntent | None,
        tool_name: str,
        *,
        began: float | None,
        success: bool,
        error: str | None,
        client_name: str | None,
        source: str = SOURCE,
        arguments: Any = None,
        result: Any = None,
        outcome: Outcome | None = None,
    ) -> None:
        """One call's usage row (`began`: its monotonic start, None when nothing was sent;
        `outcome`: refused or cancelled, else ok or error as `success` says)."""
        now = time.monotonic()
        duration_ms = round((now - began) * 1000, 3) if began is not None else None
        called_at = datetime.now(UTC)
        if duration_ms is not None:
            called_at -= timedelta(milliseconds=duration_ms)
            self.ops.call_latency.observe(server.name, tool_name, duration_ms)
        recorder = self.ops.recorder
        if recorder is not None:
            try:
                recorder.record(
                    UsageRecord(
                        server_id=server.id,
                        tool_id=tool.id if tool is not None else None,
                        tool_name=tool_name,
                        called_at=called_at,
                        response_time_ms=duration_ms,
                        success=success,
                        error_message=error,
                        source=source,
                        client_name=client_name,
                        arguments=arguments if isinstance(arguments, dict) else None,
                        result=result,
                        outcome=outcome,
                    )
                )
            except Exception:
                # Metering must never turn an answered call into a failed one.
                logger.exception("recording the usage of %s failed", tool_name)
        # A refused or cancelled call says nothing of the tool's health.
        if tool is not None and tool.auto_disable_after is not None and outcome is None:
            self.spawn(self.ops._tool_outcome(tool, failed=not success, error=error))

    def spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def catalogue_listing(tool: ServerTool) -> dict[str, Any]:
    """The tool as tools/list sends it, from what the catalogue keeps of it."""
    item: dict[str, Any] = {"name": tool.name}
    if tool.display_name:
        item["title"] = tool.display_name
    if tool.description:
        item["description"] = tool.description
    item["inputSchema"] = tool.input_schema or {"type": "object"}
    if tool.output_schema:
        item["outputSchema"] = tool.output_schema
    if tool.annotations:
        item["annotations"] = tool.annotations
    if tool.listing_rest:
        item.update(tool.listing_rest)
    return item

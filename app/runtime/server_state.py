"""A server's reality fields in the database, and the event row of each change.

Only the supervisor writes `status`, `consecutive_failures`, `last_health_check`,
`last_startup_success`, `last_startup_error` and a system `disabled_reason`; it does so through
this class, so every state change and its event are written in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, true, update

from app.core.errors import NotFound
from app.core.events import EventKind
from app.core.scrub import Scrubber
from app.runtime.connections import ConnectionSpec
from app.runtime.spawn_guard import launcher as spawn_launcher
from storage.db import Database
from storage.models import ServerLimits, ToolServer
from storage.queries import add_event

SYSTEM = "system"
UP_STATUSES = ("running", "degraded")
# Statuses a previous process may have left behind when it died without cleaning up.
LIVE_STATUSES = ("starting", "running", "degraded", "stopping")


@dataclass(frozen=True)
class KnownServer:
    id: str
    name: str
    enabled: bool
    auto_start: bool
    placement: str


@dataclass(frozen=True)
class Attempt:
    """What one start attempt needs, read as its `starting` status is written."""

    spec: ConnectionSpec
    launcher: list[str] | None
    startup_timeout_s: float
    failures: int


class ServerState:
    def __init__(self, db: Database, node: str | None = None) -> None:
        self.db = db
        # This node of a fleet (None: the only one): the status of a server another node
        # started since is not written here.
        self.node = node

    def owns(self, row: ToolServer) -> bool:
        return self.node is None or row.status_node in (None, self.node)

    def _owned(self) -> Any:
        if self.node is None:
            return true()
        return or_(ToolServer.status_node.is_(None), ToolServer.status_node == self.node)

    async def row(self, server_id: str) -> ToolServer:
        async with self.db.read() as session:
            row = await session.get(ToolServer, server_id)
            if row is None:
                raise NotFound(f"no server {server_id!r}")
            return row

    async def leftovers_ended(self, name: str, message: str) -> None:
        """Say on the server (by name: the record outlives ids) that its leftovers were ended."""
        async with self.db.session() as session:
            server_id = await session.scalar(select(ToolServer.id).where(ToolServer.name == name))
            add_event(session, server_id, EventKind.LEFTOVERS_ENDED, message, SYSTEM)

    async def known(self) -> list[KnownServer]:
        async with self.db.read() as session:
            rows = await session.execute(
                select(
                    ToolServer.id,
                    ToolServer.name,
                    ToolServer.enabled,
                    ToolServer.auto_start,
                    ToolServer.placement,
                )
            )
            return [KnownServer(*row) for row in rows]

    async def settle_after_crash(
        self, mine: Callable[[ToolServer], bool] = lambda row: True
    ) -> list[KnownServer]:
        """Statuses a dead process left as live become `stopped`, with an event, on the servers
        this node runs (`mine`: on a fleet, the others' belong to live nodes); returns every
        server."""
        async with self.db.session() as session:
            rows = (await session.execute(select(ToolServer))).scalars().all()
            for row in rows:
                if row.status in LIVE_STATUSES and mine(row) and self.owns(row):
                    message = f"Tooldeck exited while {row.name} was {row.status}"
                    add_event(session, row.id, EventKind.STOPPED, message, SYSTEM)
                    row.status = "stopped"
            return [
                KnownServer(row.id, row.name, row.enabled, row.auto_start, row.placement)
                for row in rows
            ]

    async def begin_attempt(
        self, server_id: str, actor: str, refusal: Callable[[ToolServer], str | None]
    ) -> Attempt | str | None:
        """Mark the server `starting`; None when it is gone or disabled (nothing to start), the
        refusal's reason when this node may not run it (nothing written)."""
        async with self.db.session() as session:
            row = await session.get(ToolServer, server_id)
            if row is None or not row.enabled:
                return None
            refused = refusal(row)
            if refused is not None:
                return refused
            attempt = Attempt(
                spec=ConnectionSpec.of(row),
                launcher=spawn_launcher(await session.get(ServerLimits, row.id)),
                startup_timeout_s=row.startup_timeout_s,
                failures=row.consecutive_failures,
            )
            row.status = "starting"
            row.status_node = self.node
            failures = attempt.failures
            note = f" (after {failures} failure{'s' if failures != 1 else ''})" if failures else ""
            add_event(session, row.id, EventKind.STARTING, f"starting {row.name}{note}", actor)
            return attempt

    async def started(
        self,
        server_id: str,
        *,
        status: str,
        at: datetime,
        message: str,
        actor: str,
        degraded: str | None,
    ) -> None:
        async with self.db.session() as session:
            row = await session.get(ToolServer, server_id)
            if row is None or not self.owns(row):
                return
            row.status = status
            row.last_startup_success = at
            row.last_startup_error = None
            add_event(session, row.id, EventKind.STARTED, Scrubber.of(row)(message), actor)
            if degraded is not None:
                text = Scrubber.of(row)(f"degraded: {degraded}")
                add_event(session, row.id, EventKind.DEGRADED, text, SYSTEM)

    async def record_failure(
        self, server_id: str, kind: EventKind, message: str
    ) -> tuple[int, str | None] | None:
        """Count a failure; at `max_failures` in a row, disable the server with a reason.

        Returns (failures, the reason when it was disabled now), or None for a deleted server.
        """
        async with self.db.session() as session:
            row = await session.get(ToolServer, server_id)
            if row is None or not self.owns(row):
                return None
            row.consecutive_failures = failures = (row.consecutive_failures or 0) + 1
            row.status = "error"
            # What a server or a library said may quote the server's secrets.
            message = Scrubber.of(row)(message)
            if kind == EventKind.START_FAILED:
                row.last_startup_error = message
            add_event(session, row.id, kind, message, SYSTEM)
            if failures < row.max_failures or not row.enabled:
                return failures, None
            reason = (
                f"auto-disabled after {failures} consecutive failure"
                f"{'s' if failures != 1 else ''}: {message}"
            )
            details = {
                "before": {"enabled": True, "disabled_reason": row.disabled_reason},
                "after": {"enabled": False, "disabled_reason": reason},
            }
            row.enabled = False
            row.disabled_reason = reason
            add_event(session, row.id, EventKind.AUTO_DISABLED, reason, SYSTEM, details)
            return failures, reason

    async def needs_login(self, server_id: str, message: str) -> None:
        """An OAuth server without a usable token: not a failure to count, a person to ask."""
        async with self.db.session() as session:
            row = await session.get(ToolServer, server_id)
            if row is None or not self.owns(row):
                return
            row.status = "needs_login"
            row.last_startup_error = message
            add_event(session, row.id, EventKind.START_FAILED, message, SYSTEM)

    async def reset_failures(self, server_id: str) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(ToolServer)
                .where(ToolServer.id == server_id, ToolServer.consecutive_failures != 0)
                .values(consecutive_failures=0)
            )

    async def health_checked(
        self,
        server_id: str,
        *,
        at: datetime | None,
        reset_failures: bool = False,
        status: str | None = None,
        event: tuple[EventKind, str] | None = None,
    ) -> None:
        """A probe's outcome: when it ran, and a new quality (`running`/`degraded`) if any.

        Written only while the server is up: a stop that raced the probe wins.
        """
        values: dict[str, Any] = {}
        if at is not None:
            values["last_health_check"] = at
        if reset_failures:
            values["consecutive_failures"] = 0
        if status is not None:
            values["status"] = status
        if not values and event is None:
            return
        async with self.db.session() as session:
            if values:
                query = update(ToolServer).where(ToolServer.id == server_id, self._owned())
                if status is not None or reset_failures:
                    query = query.where(ToolServer.status.in_(UP_STATUSES))
                await session.execute(query.values(**values))
            if event is not None:
                add_event(session, server_id, event[0], event[1], SYSTEM)

    async def stopping(self, server_id: str) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(ToolServer)
                .where(ToolServer.id == server_id, self._owned())
                .values(status="stopping")
            )

    async def stopped(self, server_id: str, message: str, actor: str) -> bool:
        """Mark it stopped with an event; False when it already was (or is gone). A server
        another node started since gets only the event: its status is that node's."""
        async with self.db.session() as session:
            row = await session.get(ToolServer, server_id)
            if row is None or (self.owns(row) and row.status == "stopped"):
                return False
            if self.owns(row):
                row.status = "stopped"
            add_event(session, row.id, EventKind.STOPPED, Scrubber.of(row)(message), actor)
            return True

    async def settle_stale(self, server_id: str, actor: str) -> None:
        """A stop of a server not running here: only a status left by a dead process to fix."""
        async with self.db.session() as session:
            row = await session.get(ToolServer, server_id)
            if row is None:
                raise NotFound(f"no server {server_id!r}")
            if row.status in LIVE_STATUSES and self.owns(row):
                row.status = "stopped"
                add_event(session, row.id, EventKind.STOPPED, f"stopped {row.name}", actor)

    async def restarting(self, server_id: str, name: str, actor: str) -> None:
        async with self.db.session() as session:
            add_event(session, server_id, EventKind.RESTARTED, f"restart of {name}", actor)

"""The resource watchdog: sustained RSS and CPU ceilings restart a server.

It samples each limited stdio server's process tree (RSS and CPU%, the same sampling as
`runtime_info`) on the `limits` job's interval. A limit exceeded in every sample for `sustain_s`
restarts the server, with a `limit_exceeded` event and a `resource_limit` alert naming the limit.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select

from app.core.errors import TooldeckError
from app.core.events import EventKind
from app.governance.alerts import RULE_RESOURCE_LIMIT, AlertEngine, Finding
from app.runtime.supervisor import Supervisor
from storage.db import Database
from storage.models import ServerLimits
from storage.queries import add_event

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
ACTOR = "system:limits"


async def load_limits(db: Database) -> list[ServerLimits]:
    async with db.read() as session:
        return list((await session.execute(select(ServerLimits))).scalars())


class ResourceWatchdog:
    def __init__(
        self, db: Database, supervisor: Supervisor, alerts: AlertEngine | None = None
    ) -> None:
        self.db = db
        self.supervisor = supervisor
        self.alerts = alerts
        # (server, limit) -> (pid, monotonic time of the first sample over the limit)
        self._over_since: dict[tuple[str, str], tuple[int, float]] = {}
        self._restarts: set[asyncio.Task[None]] = set()

    async def sweep(self) -> str:
        rows = await load_limits(self.db)
        self.supervisor.call_gates.load(rows)
        watched = [
            row for row in rows if row.max_rss_mb is not None or row.max_cpu_percent is not None
        ]
        restarted: list[str] = []
        checked = 0
        for row in watched:
            if not self.supervisor.is_running(row.server_id):
                self._forget(row.server_id)
                continue
            info = await self.supervisor.runtime_info(row.server_id)
            if info.pid is None:  # not a local process: nothing to measure
                continue
            checked += 1
            over = self._over(row, info.rss_bytes, info.cpu_percent)
            now = time.monotonic()
            for limit in ("rss", "cpu"):
                key = (row.server_id, limit)
                if limit not in over:
                    self._over_since.pop(key, None)
                    continue
                pid, since = self._over_since.get(key, (info.pid, now))
                if pid != info.pid:  # a new process: its own clock
                    since = now
                self._over_since[key] = (info.pid, since)
                if now - since >= row.sustain_s:
                    self._forget(row.server_id)
                    restarted.append(info.server_name)
                    await self._restart(row, info.server_name, limit, over[limit], now - since)
                    break
        outcome = f"{checked} watched"
        return outcome + (f", restarted {', '.join(restarted)}" if restarted else "")

    def _forget(self, server_id: str) -> None:
        for key in [key for key in self._over_since if key[0] == server_id]:
            self._over_since.pop(key, None)

    @staticmethod
    def _over(
        row: ServerLimits, rss_bytes: int | None, cpu_percent: float | None
    ) -> dict[str, str]:
        over: dict[str, str] = {}
        if row.max_rss_mb is not None and rss_bytes is not None:
            if rss_bytes > row.max_rss_mb * MIB:
                over["rss"] = f"memory {rss_bytes / MIB:.0f} MiB > {row.max_rss_mb:g} MiB"
        if row.max_cpu_percent is not None and cpu_percent is not None:
            if cpu_percent > row.max_cpu_percent:
                over["cpu"] = f"CPU {cpu_percent:.0f}% > {row.max_cpu_percent:g}%"
        return over

    async def _restart(
        self, row: ServerLimits, name: str, limit: str, what: str, sustained_s: float
    ) -> None:
        label = {"rss": "memory (RSS) limit", "cpu": "CPU limit"}[limit]
        message = f"{name} exceeded its {label} for {sustained_s:.0f} s ({what}): restarting"
        details = {
            "limit": limit,
            "measured": what,
            "sustained_s": round(sustained_s, 1),
            "max_rss_mb": row.max_rss_mb,
            "max_cpu_percent": row.max_cpu_percent,
        }
        async with self.db.session() as session:
            add_event(session, row.server_id, EventKind.LIMIT_EXCEEDED, message, ACTOR, details)
        if self.alerts is not None:
            await self.alerts.raise_alert(
                Finding(
                    RULE_RESOURCE_LIMIT,
                    f"server:{row.server_id}",
                    message,
                    server_id=row.server_id,
                    severity="critical",
                    details=details,
                )
            )
        try:
            await self.supervisor.restart(row.server_id, actor=ACTOR)
        except TooldeckError as exc:
            logger.warning("restarting %s for its %s failed: %s", name, label, exc)

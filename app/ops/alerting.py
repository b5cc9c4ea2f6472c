"""Wiring of the alert engine and the resource watchdog into a running core."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from app.governance.alerts import AlertEngine
from app.governance.limits_watchdog import ResourceWatchdog, load_limits
from app.runtime.scheduler import Job

if TYPE_CHECKING:
    from app.ops.facade import Operations
    from app.runtime.scheduler import Scheduler
    from app.runtime.supervisor import Supervisor


async def install_alerting(
    ops: Operations, supervisor: Supervisor, scheduler: Scheduler
) -> Callable[[], Awaitable[None]]:
    """Add the `alerts` and `limits` jobs (before the scheduler starts); returns the closer."""
    engine = AlertEngine(ops.db, ops.settings)
    engine.watch(ops.changes)
    ops.alerts = engine
    supervisor.call_gates.load(await load_limits(ops.db))
    watchdog = ResourceWatchdog(ops.db, supervisor, engine)
    scheduler.add(
        Job(
            "alerts",
            "evaluate the alert rules and deliver new alerts",
            ops.settings.alert_interval_s,
            engine.evaluate,
        )
    )
    scheduler.add(
        Job(
            "limits",
            "sample the memory and CPU of servers with limits; restart those over them",
            ops.settings.limits_sample_interval_s,
            watchdog.sweep,
        )
    )
    return engine.close

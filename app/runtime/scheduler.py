"""Periodic jobs: health sweep, capability refresh, cleanup, memory and CPU sampling.

Each job runs in its own loop task on its configured interval plus a little jitter. A job never
overlaps itself: a run requested while one is in progress joins that run. Each job remembers
its last start, duration and outcome and its next run, for `tooldeck jobs` and the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.core.errors import NotFound, NotRunning, plain_error
from app.core.events import EventKind
from app.core.schemas import JobStatus
from storage.db import Database
from storage.models import ToolServer
from storage.queries import add_event

if TYPE_CHECKING:
    from app.core.settings import Settings
    from app.runtime.supervisor import Supervisor

logger = logging.getLogger(__name__)

JobBody = Callable[[], Awaitable[str]]
# At most this share of the interval, and never more than this many seconds, of random delay.
JITTER_FRACTION = 0.1
JITTER_MAX_S = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Job:
    name: str
    description: str
    interval_s: float
    body: JobBody
    runs: int = 0
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_duration_ms: float | None = None
    last_ok: bool | None = None
    last_outcome: str | None = None
    next_run_at: datetime | None = None
    current: asyncio.Task[None] | None = None
    rescheduled: asyncio.Event = field(default_factory=asyncio.Event)

    def jitter(self) -> float:
        # Jobs of many Tooldecks (or many jobs) on one interval would otherwise fire together.
        return random.uniform(0, min(self.interval_s * JITTER_FRACTION, JITTER_MAX_S))

    def status(self) -> JobStatus:
        return JobStatus(
            name=self.name,
            description=self.description,
            interval_s=self.interval_s,
            running=self.current is not None,
            runs=self.runs,
            last_started_at=self.last_started_at,
            last_finished_at=self.last_finished_at,
            last_duration_ms=self.last_duration_ms,
            last_ok=self.last_ok,
            last_outcome=self.last_outcome,
            next_run_at=self.next_run_at,
        )


class Scheduler:
    def __init__(self, jobs: list[Job] | None = None, *, db: Database | None = None) -> None:
        self._jobs: dict[str, Job] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._db = db
        for job in jobs or []:
            self.add(job)

    def add(self, job: Job) -> None:
        self._jobs[job.name] = job

    # ---- running --------------------------------------------------------------------------

    async def start(self) -> None:
        for job in self._jobs.values():
            job.next_run_at = utcnow() + timedelta(seconds=job.interval_s + job.jitter())
            self._loops.append(asyncio.create_task(self._loop(job), name=f"job:{job.name}"))

    async def stop(self) -> None:
        """End the loops and any run in progress."""
        for task in self._loops:
            task.cancel()
        running = [job.current for job in self._jobs.values() if job.current is not None]
        for task in running:
            task.cancel()
        await asyncio.gather(*self._loops, *running, return_exceptions=True)
        self._loops.clear()

    async def run_now(self, name: str) -> JobStatus:
        """Run a job at once and wait for it; if it is running, wait for that run instead."""
        job = self._jobs.get(name)
        if job is None:
            raise NotFound(f"no job {name!r}: use one of {', '.join(self._jobs)}")
        await self._execute(job)
        return job.status()

    def status(self) -> list[JobStatus]:
        return [job.status() for job in self._jobs.values()]

    async def _loop(self, job: Job) -> None:
        while True:
            assert job.next_run_at is not None
            delay = max(0.0, (job.next_run_at - utcnow()).total_seconds())
            job.rescheduled.clear()
            try:
                async with asyncio.timeout(delay):
                    # A run on request moves the next run; start the wait again from it.
                    await job.rescheduled.wait()
                continue
            except TimeoutError:
                pass
            await self._execute(job)

    async def _execute(self, job: Job) -> None:
        if job.current is None:
            job.current = asyncio.create_task(self._run(job), name=f"run:{job.name}")
        # Shielded: a caller giving up on waiting must not cancel a run others rely on.
        await asyncio.shield(job.current)

    async def _run(self, job: Job) -> None:
        job.last_started_at = utcnow()
        began = time.monotonic()
        try:
            outcome, ok = await job.body(), True
        except asyncio.CancelledError:
            outcome, ok = "cancelled", False
            raise
        except Exception as exc:
            logger.exception("job %s failed", job.name)
            outcome, ok = f"failed: {plain_error(exc)}", False
        finally:
            job.runs += 1
            job.last_finished_at = utcnow()
            job.last_duration_ms = round((time.monotonic() - began) * 1000, 1)
            job.last_ok = ok
            job.last_outcome = outcome
            job.next_run_at = utcnow() + timedelta(seconds=job.interval_s + job.jitter())
            job.current = None
            job.rescheduled.set()
        if not ok and self._db is not None:
            await _job_event(self._db, f"{job.name} {outcome}")


async def _job_event(db: Database, message: str) -> None:
    with suppress(Exception):
        async with db.session() as session:
            add_event(session, None, EventKind.JOB, message, "system")


# ---- the jobs of a running core --------------------------------------------------------------


def core_scheduler(db: Database, settings: Settings, supervisor: Supervisor) -> Scheduler:
    """The scheduler with its four jobs, on the configured intervals."""

    async def health_sweep() -> str:
        ids = await _server_ids(db, ToolServer.enabled.is_(True))
        running = [server_id for server_id in ids if supervisor.connection(server_id)]
        results = await supervisor.check_all(running)
        failing = [result.server_name for result in results if not result.is_responsive]
        degraded = [result.server_name for result in results if result.status == "degraded"]
        outcome = f"{len(results)} checked, {len(results) - len(failing)} responsive"
        if degraded:
            outcome += f", degraded: {', '.join(degraded)}"
        if failing:
            outcome += f", failing: {', '.join(failing)}"
        return outcome

    async def capability_refresh() -> str:
        ids = await _server_ids(db, ToolServer.enabled.is_(True), ToolServer.auto_update.is_(True))
        running = [server_id for server_id in ids if supervisor.connection(server_id)]
        limit = asyncio.Semaphore(settings.health_concurrency)

        async def one(server_id: str) -> bool:
            async with limit:
                try:
                    await supervisor.refresh_tools(server_id, actor="system")
                except (NotRunning, NotFound):
                    return False
                return True

        results = await asyncio.gather(*(one(server_id) for server_id in running))
        failed = results.count(False)
        return f"{len(results) - failed} refreshed" + (f", {failed} failed" if failed else "")

    async def cleanup() -> str:
        from storage.retention import prune_old_rows

        days = settings.tool_server_usage_retention_days
        result = await prune_old_rows(db, days, resource_days=settings.resource_history_days)
        outcome = f"older than {days} days: {_describe(result)}"
        if _deleted_anything(result):
            await _job_event(db, f"cleanup deleted {_describe(result)}")
        return outcome

    async def resource_sampling() -> str:
        from storage.resource_history import Sample, write_samples

        at = utcnow()
        measured = await supervisor.sample_processes()
        samples = [Sample(server_id, at, rss, cpu) for server_id, rss, cpu in measured]
        return f"{await write_samples(db, samples)} sampled"

    return Scheduler(
        [
            Job(
                "health",
                "ping every running enabled server",
                settings.tool_server_health_check_interval,
                health_sweep,
            ),
            Job(
                "capabilities",
                "re-list the tools of running auto-update servers",
                settings.tool_server_auto_update_interval,
                capability_refresh,
            ),
            Job(
                "cleanup",
                "delete usage and events past the retention period",
                settings.tool_server_cleanup_interval,
                cleanup,
            ),
            Job(
                "resources",
                "keep the memory and CPU of every running local server as a series",
                settings.resource_sample_interval_s,
                resource_sampling,
            ),
        ],
        db=db,
    )


async def _server_ids(db: Database, *conditions: Any) -> list[str]:
    async with db.read() as session:
        rows = await session.execute(select(ToolServer.id).where(*conditions))
        return list(rows.scalars())


def _describe(result: Any) -> str:
    """What prune_old_rows reported, whatever its shape (a count, a dict, a dataclass)."""
    if isinstance(result, dict):
        return ", ".join(f"{value} {key}" for key, value in result.items()) or "nothing"
    fields = getattr(result, "__dataclass_fields__", None)
    if fields:
        return ", ".join(f"{getattr(result, name)} {name}" for name in fields)
    return f"{result} rows" if result is not None else "done"


def _deleted_anything(result: Any) -> bool:
    if isinstance(result, int):
        return result > 0
    if isinstance(result, dict):
        return any(isinstance(value, int) and value > 0 for value in result.values())
    fields = getattr(result, "__dataclass_fields__", None)
    if fields:
        return any(
            isinstance(getattr(result, name), int) and getattr(result, name) > 0 for name in fields
        )
    return False

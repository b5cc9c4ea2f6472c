"""Scheduler jobs on short intervals: no overlap, run-now, outcomes, and the core's jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.core.errors import NotFound, NotRunning
from app.core.settings import Settings
from app.ops.bootstrap import JOB_NAMES, running_core
from app.ops.facade import LocalOperations
from app.runtime.lock import SupervisorLock
from app.runtime.scheduler import Job, Scheduler, core_scheduler
from app.runtime.supervisor import Supervisor
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import event_kinds, eventually, fast_supervisor


class Counter:
    """A job body that counts its runs and how many ran at once; with a gate, each run lasts
    until the test opens it."""

    def __init__(self, gate: asyncio.Event | None = None, fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail
        self.runs = 0
        self.active = 0
        self.most_at_once = 0

    async def __call__(self) -> str:
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.runs += 1
            if self.fail:
                raise RuntimeError("disk on fire")
            return f"run {self.runs}"
        finally:
            self.active -= 1


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    scheduler = Scheduler()
    yield scheduler
    await scheduler.stop()


async def test_jobs_run_on_their_interval_and_report(scheduler: Scheduler) -> None:
    body = Counter()
    scheduler.add(Job("tick", "counts", 0.1, body))
    await scheduler.start()
    [status] = scheduler.status()
    assert status.runs == 0 and status.next_run_at is not None and not status.running

    async def ran_twice() -> bool:
        return body.runs >= 2

    await eventually(ran_twice, within=3, every=0.02)
    [status] = scheduler.status()
    assert status.last_ok is True
    assert status.last_outcome is not None and status.last_outcome.startswith("run ")
    assert status.last_duration_ms is not None
    assert status.next_run_at is not None and status.last_finished_at is not None
    assert status.next_run_at > status.last_finished_at


async def test_a_job_never_overlaps_itself_and_run_now_joins_a_run(
    scheduler: Scheduler,
) -> None:
    gate = asyncio.Event()
    body = Counter(gate=gate)
    scheduler.add(Job("slow", "waits for the test", 3600, body))
    await scheduler.start()
    callers = asyncio.gather(*(scheduler.run_now("slow") for _ in range(5)))

    async def running() -> bool:
        return body.active == 1

    # All five asked before the run could end: each must join it, not start its own.
    await eventually(running, within=5, every=0.01)
    gate.set()
    statuses = await callers
    assert body.runs == 1 and body.most_at_once == 1
    assert all(status.runs == 1 for status in statuses)
    # Run now moves the next scheduled run a whole interval on.
    [status] = scheduler.status()
    assert status.next_run_at is not None and status.last_finished_at is not None
    assert (status.next_run_at - status.last_finished_at).total_seconds() >= 3600


async def test_a_failing_job_reports_its_error_and_keeps_its_schedule(
    scheduler: Scheduler,
) -> None:
    body = Counter(fail=True)
    scheduler.add(Job("broken", "fails", 0.05, body))
    await scheduler.start()
    await eventually(lambda: _runs_at_least(body, 2), within=3, every=0.02)
    [status] = scheduler.status()
    assert status.last_ok is False
    assert status.last_outcome == "failed: RuntimeError: disk on fire"


async def _runs_at_least(body: Counter, count: int) -> bool:
    return body.runs >= count


async def test_run_now_of_an_unknown_job(scheduler: Scheduler) -> None:
    scheduler.add(Job("one", "", 10, Counter()))
    with pytest.raises(NotFound, match="no job 'two': use one of one"):
        await scheduler.run_now("two")


async def test_facade_without_a_scheduler_refuses(ops: LocalOperations) -> None:
    with pytest.raises(NotRunning):
        await ops.scheduler_jobs()
    with pytest.raises(NotRunning):
        await ops.run_job("health")


async def test_core_jobs_sweep_health_and_refresh_tools(ops: LocalOperations) -> None:
    supervisor: Supervisor = fast_supervisor(ops)
    scheduler = core_scheduler(ops.db, ops.settings, supervisor)
    ops.scheduler = scheduler
    try:
        tiny = {"command": PYTHON, "args": [str(TEST_SERVERS / "tiny.py")]}
        await ops.create_server({"name": "pinger", **tiny}, actor="t")
        await ops.create_server({"name": "idle", "auto_start": False, **tiny}, actor="t")
        await ops.start_server("pinger", actor="t")
        jobs = {job.name: job for job in await ops.scheduler_jobs()}
        assert set(jobs) == {"health", "capabilities", "cleanup", "resources"}
        assert jobs["health"].interval_s == ops.settings.tool_server_health_check_interval

        health = await ops.run_job("health")
        assert health.last_ok is True
        assert health.last_outcome == "1 checked, 1 responsive"
        assert (await ops.get_server("pinger")).last_health_check is not None
        assert (await ops.get_server("idle")).last_health_check is None

        refresh = await ops.run_job("capabilities")
        assert refresh.last_ok is True and refresh.last_outcome == "1 refreshed"
        assert "pinger" in [s.name for s in await ops.list_servers(status="running")]
        assert "stopped" not in await event_kinds(ops, "pinger")
    finally:
        await supervisor.shutdown()


async def test_the_scheduler_reports_a_cleanup_run(ops: LocalOperations) -> None:
    supervisor = fast_supervisor(ops)
    scheduler = core_scheduler(ops.db, ops.settings, supervisor)
    try:
        status = await scheduler.run_now("cleanup")
        assert status.runs == 1
        assert status.last_ok is True, status.last_outcome
        assert status.last_outcome is not None
        assert status.last_outcome.startswith(
            f"older than {ops.settings.tool_server_usage_retention_days} days"
        )
    finally:
        await supervisor.shutdown()


async def test_cleanup_deletes_events_past_retention_in_batches(ops: LocalOperations) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, select

    from storage.models import ServerEvent
    from storage.retention import prune_old_rows

    now = datetime.now(UTC)
    async with ops.db.session() as session:
        for age_days in [100] * 7 + [91, 89, 1]:
            session.add(
                ServerEvent(kind="job", message="x", created_at=now - timedelta(days=age_days))
            )
    result = await prune_old_rows(ops.db, 90, now=now, batch=3)
    assert result["events"] == 8
    async with ops.db.session() as session:
        left = await session.scalar(select(func.count(ServerEvent.id)))
    assert left == 2


async def test_the_job_names_the_cli_offers_are_the_running_cores(settings: Settings) -> None:
    """`tooldeck jobs run` lists its choices without a core; they must be the core's jobs."""
    lock = SupervisorLock(settings.data_dir, "cli")
    lock.acquire()
    try:
        async with running_core(settings, autostart=False) as ops:
            assert ops.scheduler is not None
            names = [job.name for job in await ops.scheduler_jobs()]
    finally:
        lock.release()
    assert sorted(names) == sorted(JOB_NAMES)

"""The memory and CPU history of local servers: sampled by the `resources` job from a real
stdio server, kept as a series, pruned by its retention, read per server and shown in /metrics."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from sqlalchemy import delete, func, select, update

from app.core.errors import InvalidInput, NotFound
from app.core.settings import Settings
from app.faces.http.api import create_app
from app.ops.facade import LocalOperations
from app.runtime.scheduler import core_scheduler
from storage.models import ResourceSample, ToolServer
from storage.resource_history import Sample, write_samples
from storage.retention import prune_old_rows
from tests.cli_runner import tooldeck
from tests.conftest import stdio_server_spec
from tests.runtime_helpers import fast_supervisor
from tests.tui_helpers import drawn_lines, make_app, settle
from widgets.health_pane import SPARK_BARS, HealthPane, sparkline

MIB = 2**20


async def test_samples_of_a_running_server_accumulate_and_follow_its_memory(
    ops: LocalOperations,
) -> None:
    supervisor = fast_supervisor(ops)
    scheduler = core_scheduler(ops.db, ops.settings, supervisor)
    try:
        await ops.create_server(stdio_server_spec("hungry", "hungry"), actor="test")
        await ops.create_server(stdio_server_spec("idle", "tiny", auto_start=False), actor="test")
        await ops.start_server("hungry", actor="test")
        # A stopped server has no process: it is never sampled.
        first = await scheduler.run_now("resources")
        assert first.last_ok and first.last_outcome == "1 sampled"
        await ops.call_tool("hungry", "grow", {"mb": 64}, source="cli")
        await scheduler.run_now("resources")

        history = await ops.process_history("hungry", "1h")
        assert history.server_name == "hungry"
        assert history.interval_s == ops.settings.resource_sample_interval_s
        assert len(history.samples) == 2
        before, after = history.samples
        assert before.sampled_at <= after.sampled_at
        assert before.rss_bytes is not None and after.rss_bytes is not None
        assert after.rss_bytes - before.rss_bytes >= 60 * MIB
        # Touching 64 MiB between the two samples took CPU, and the job's own sampler saw it.
        assert after.cpu_percent is not None and after.cpu_percent > 0
        assert (await ops.process_history("idle")).samples == []

        [latest] = await ops.process_samples()
        assert latest.server_name == "hungry" and latest.rss_bytes == after.rss_bytes
        await ops.stop_server("hungry", actor="test")
        # Stopped: its last sample is history, not a current figure.
        assert await ops.process_samples() == []
        assert len((await ops.process_history("hungry")).samples) == 2
    finally:
        await supervisor.shutdown()


async def test_the_window_and_a_bad_one(ops: LocalOperations) -> None:
    server = await ops.create_server(stdio_server_spec("quiet", "tiny"), actor="test")
    now = datetime.now(UTC)
    await write_samples(
        ops.db,
        [Sample(server.id, now - timedelta(hours=hours), 100 * MIB, 1.0) for hours in (30, 2, 0)],
    )
    assert len((await ops.process_history("quiet", "1h")).samples) == 1
    assert len((await ops.process_history("quiet", "3h")).samples) == 2
    assert len((await ops.process_history("quiet", "2d")).samples) == 3
    with pytest.raises(InvalidInput) as bad:
        await ops.process_history("quiet", "yesterday")
    assert bad.value.field == "since"
    with pytest.raises(NotFound):
        await ops.process_history("nobody")


async def test_retention_prunes_old_samples_in_batches_and_keeps_recent_ones(
    ops: LocalOperations,
) -> None:
    server = await ops.create_server(stdio_server_spec("old", "tiny"), actor="test")
    now = datetime.now(UTC)
    ages = [10] * 7 + [8, 6, 1, 0]
    await write_samples(
        ops.db, [Sample(server.id, now - timedelta(days=days), MIB, 0.0) for days in ages]
    )
    result = await prune_old_rows(ops.db, 90, resource_days=7, now=now, batch=3)
    assert result["resource samples"] == 8
    assert result["usage"] == 0
    async with ops.db.read() as session:
        left = await session.scalar(select(func.count(ResourceSample.id)))
    assert left == 3


async def test_past_a_day_samples_thin_to_each_quarter_hour_s_peak_memory(
    ops: LocalOperations,
) -> None:
    server = await ops.create_server(stdio_server_spec("long", "tiny"), actor="test")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    quarter = (now - timedelta(days=2)).replace(minute=0)
    # Two old quarter hours a minute apart (the second peaks at its 7th minute), and the last
    # half hour at full detail.
    old = [Sample(server.id, quarter + timedelta(minutes=m), (m + 1) * MIB, 1.0) for m in range(15)]
    old += [
        Sample(server.id, quarter + timedelta(minutes=15 + m), (100 if m == 7 else m) * MIB, 2.0)
        for m in range(15)
    ]
    recent = [Sample(server.id, now - timedelta(minutes=m), MIB, 0.5) for m in range(30)]
    await write_samples(ops.db, old + recent)

    result = await prune_old_rows(ops.db, 90, resource_days=7, now=now, batch=4)
    assert result["resource samples thinned"] == 28
    async with ops.db.read() as session:
        rows = (
            await session.execute(
                select(ResourceSample.sampled_at, ResourceSample.rss_bytes).order_by(
                    ResourceSample.sampled_at
                )
            )
        ).all()
    kept_old = [(at.replace(tzinfo=UTC) - quarter, rss) for at, rss in rows[:2]]
    assert kept_old == [(timedelta(minutes=14), 15 * MIB), (timedelta(minutes=22), 100 * MIB)]
    assert len(rows) == 2 + 30

    again = await prune_old_rows(ops.db, 90, resource_days=7, now=now, batch=4)
    assert again["resource samples thinned"] == 0


async def test_the_cleanup_job_prunes_by_the_resource_history_setting(
    ops: LocalOperations,
) -> None:
    ops.settings.resource_history_days = 2
    server = await ops.create_server(stdio_server_spec("aging", "tiny"), actor="test")
    now = datetime.now(UTC)
    await write_samples(
        ops.db, [Sample(server.id, now - timedelta(days=days), MIB, 0.0) for days in (3, 1)]
    )
    supervisor = fast_supervisor(ops)
    try:
        status = await core_scheduler(ops.db, ops.settings, supervisor).run_now("cleanup")
        assert status.last_ok and "1 resource samples" in (status.last_outcome or "")
        assert len((await ops.process_history("aging", "7d")).samples) == 1
    finally:
        await supervisor.shutdown()


async def test_metrics_carry_the_latest_memory_and_cpu_of_running_servers(
    ops: LocalOperations,
) -> None:
    supervisor = fast_supervisor(ops)
    try:
        await ops.create_server(stdio_server_spec("measured", "tiny"), actor="test")
        await ops.start_server("measured", actor="test")
        await core_scheduler(ops.db, ops.settings, supervisor).run_now("resources")
        [sample] = await ops.process_samples()
        transport = httpx2.ASGITransport(app=create_app(ops, tokens=None))
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            text = (await http.get("/metrics")).text
        assert "# TYPE tooldeck_server_memory_rss_bytes gauge" in text
        assert f'tooldeck_server_memory_rss_bytes{{server="measured"}} {sample.rss_bytes}' in text
        assert 'tooldeck_server_cpu_percent{server="measured"} ' in text
    finally:
        await supervisor.shutdown()


async def test_the_health_pane_draws_memory_and_cpu_sparklines(
    settings: Settings, ops: LocalOperations
) -> None:
    supervisor = fast_supervisor(ops)
    scheduler = core_scheduler(ops.db, ops.settings, supervisor)
    try:
        await ops.create_server(stdio_server_spec("hungry", "hungry"), actor="test")
        await ops.start_server("hungry", actor="test")
        for mb in (0, 40, 80):
            if mb:
                await ops.call_tool("hungry", "grow", {"mb": mb}, source="cli")
            await scheduler.run_now("resources")
        peak = max(s.rss_bytes or 0 for s in (await ops.process_history("hungry")).samples)
        app = make_app(settings, ops)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            lines = drawn_lines(app.screen.query_one(HealthPane))
            [memory] = [line for line in lines if line.lstrip().startswith("memory")]
            [cpu] = [line for line in lines if line.lstrip().startswith("cpu")]
            # Growing memory: three bars, rising to the top one at its peak.
            bars = "".join(char for char in memory if char in SPARK_BARS)
            assert len(bars) == 3 and bars[-1] == SPARK_BARS[-1] and bars[0] < bars[1] < bars[2]
            assert f"max {peak / MIB:.0f} MiB" in memory
            assert len([char for char in cpu if char in SPARK_BARS]) == 3 and "max" in cpu
            await app.action_quit()
    finally:
        await supervisor.shutdown()


def test_a_long_series_is_cut_into_runs_shown_by_their_peak() -> None:
    values = [1.0] * 40
    values[13] = 9.0  # a short spike among many samples stays visible
    drawn = sparkline(values, width=8)
    assert len(drawn) == 8 and drawn.count(SPARK_BARS[-1]) == 1
    assert sparkline([0.0, 0.0]) == SPARK_BARS[0] * 2
    assert sparkline([]) == ""


async def test_the_cli_prints_a_servers_history_and_its_json(ops: LocalOperations) -> None:
    server = await ops.create_server(stdio_server_spec("seen", "tiny"), actor="test")
    now = datetime.now(UTC)
    await write_samples(
        ops.db,
        [Sample(server.id, now - timedelta(minutes=m), (100 + m) * MIB, 2.5) for m in (90, 5)],
    )
    table = await asyncio.to_thread(tooldeck, "server", "history", "seen", "--since", "2h")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SAMPLED", "MEMORY", "CPU"]
    assert ["190.0 MiB", "105.0 MiB"] == [line.split("  ")[-2].strip() for line in lines[1:]]
    answer = await asyncio.to_thread(tooldeck, "server", "history", "seen", "--json")
    assert [s["rss_bytes"] for s in json.loads(answer.stdout)["samples"]] == [105 * MIB]
    bad = await asyncio.to_thread(tooldeck, "server", "history", "seen", "--since", "soon")
    assert bad.returncode != 0 and "since" in bad.stderr


async def test_a_server_another_node_runs_shows_its_owner_s_latest_sample(
    ops: LocalOperations,
) -> None:
    spec = {**stdio_server_spec("elsewhere", "tiny"), "auto_start": False}
    server = await ops.create_server(spec, actor="test")
    supervisor = fast_supervisor(ops)
    try:
        # Up in the shared database with no process here: what another node's run looks like.
        async with ops.db.session() as session:
            await session.execute(
                update(ToolServer).where(ToolServer.id == server.id).values(status="running")
            )
        interval = ops.settings.resource_sample_interval_s
        now = datetime.now(UTC)
        await write_samples(
            ops.db,
            [
                Sample(server.id, now - timedelta(seconds=5 * interval), 900 * MIB, 90.0),
                Sample(server.id, now - timedelta(seconds=interval), 42 * MIB, 7.5),
            ],
        )
        info = await ops.runtime_info("elsewhere")
        assert (info.rss_bytes, info.cpu_percent, info.pid) == (42 * MIB, 7.5, None)
        assert info.log_path is None

        async with ops.db.session() as session:
            await session.execute(delete(ResourceSample))
        await write_samples(
            ops.db, [Sample(server.id, now - timedelta(seconds=5 * interval), 900 * MIB, 90.0)]
        )
        stale = await ops.runtime_info("elsewhere")
        assert (stale.rss_bytes, stale.cpu_percent) == (None, None)
    finally:
        await supervisor.shutdown()

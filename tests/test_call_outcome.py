"""Refused and cancelled calls are recorded as their own outcome and kept apart from tool errors
in every figure: analytics, server and tool metrics, time series, tool counters, Prometheus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from app.core.errors import Conflict, InvalidInput, NotFound, NotRunning
from app.faces.http.prometheus import render_metrics
from app.ops.facade import LocalOperations
from app.runtime.supervisor import Supervisor
from app.runtime.usage import UsageRecorder
from storage.models import ToolUsage
from tests.runtime_helpers import eventually, fast_supervisor, scripted


@pytest.fixture
async def metered(ops: LocalOperations) -> AsyncIterator[tuple[Supervisor, UsageRecorder]]:
    """A supervisor and a real usage recorder behind the facade."""
    # One failed call of one makes a "failing tool": a refusal counted as an error would show.
    ops.settings.failing_tool_min_calls = 1
    recorder = UsageRecorder(ops.db, ops.settings)
    await recorder.start()
    ops.recorder = recorder
    supervisor = fast_supervisor(ops)
    try:
        yield supervisor, recorder
    finally:
        await supervisor.shutdown()
        await recorder.stop()


async def test_refusals_and_cancels_are_kept_apart_from_tool_errors(
    ops: LocalOperations, metered: tuple[Supervisor, UsageRecorder]
) -> None:
    runtime, recorder = metered
    await ops.create_server(scripted("worker"), actor="t")
    await ops.create_server(scripted("idle", auto_start=False), actor="t")
    await ops.start_server("worker", actor="t")
    await ops.start_server("idle", actor="t")
    await ops.stop_server("idle", actor="t")

    # Two answered calls: one ok, one the tool's error.
    assert not (await ops.call_tool("worker", "add", {"a": 1, "b": 2}, source="cli")).is_error
    assert (await ops.call_tool("worker", "fail", {"message": "boom"}, source="cli")).is_error
    # Five refusals: bad arguments, unknown tool, unknown server, disabled tool, not running.
    with pytest.raises(InvalidInput):
        await ops.call_tool("worker", "add", {"a": "two"}, source="api")
    with pytest.raises(NotFound):
        await ops.call_tool("worker", "nope", {}, source="gateway")
    with pytest.raises(NotFound):
        await ops.call_tool("-", "nope", {}, source="gateway")
    await ops.set_tool_enabled("echo", False, actor="t", server_ref="worker")
    with pytest.raises(Conflict):
        await ops.call_tool("worker", "echo", {"text": "x"}, source="tui")
    with pytest.raises(NotRunning):
        await ops.call_tool("idle", "echo", {"text": "x"}, source="cli")
    # One cancel: the caller gives up on a slow call (a call limit makes it visible in flight).
    await ops.set_server_limits("worker", {"max_concurrent_calls": 4}, actor="t")
    worker_id = (await ops.get_server("worker")).id
    slow = asyncio.create_task(ops.call_tool("worker", "sleep", {"seconds": 30}, source="tui"))
    await eventually(lambda: _in_flight(runtime, worker_id))
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    await recorder.flush()

    async with ops.db.read() as session:
        outcomes = sorted((await session.execute(select(ToolUsage.outcome))).scalars())
    assert outcomes == ["cancelled", "error", "ok"] + ["refused"] * 5

    view = await ops.analytics("24h")
    assert (view.total_calls_today, view.total_errors_today) == (2, 1)
    assert (view.total_refused, view.total_cancelled) == (5, 1)
    assert view.overall_success_rate == 0.5
    assert [tool.tool_name for tool in view.failing_tools] == ["fail"]
    assert {tool.tool_name for tool in view.top_tools} == {"add", "fail"}

    worker = await ops.server_metrics("worker", "24h")
    assert (worker.total_calls, worker.total_errors, worker.success_rate) == (2, 1, 0.5)
    assert (worker.total_refused, worker.total_cancelled) == (3, 1)
    idle = await ops.server_metrics("idle", "24h")
    assert (idle.total_calls, idle.total_errors, idle.total_refused) == (0, 0, 1)

    add = await ops.tool_metrics("add", "worker", "24h")
    assert (add.total_calls, add.total_errors, add.total_refused) == (1, 0, 1)
    assert add.success_rate == 1.0
    tools = {tool.name: tool for tool in await ops.list_tools("worker")}
    assert (tools["add"].total_calls, tools["add"].total_errors) == (1, 0)
    assert tools["add"].total_refused == 1 and tools["echo"].total_refused == 1
    assert tools["sleep"].total_cancelled == 1 and tools["sleep"].total_errors == 0

    for period in ("1h", "7d"):  # raw rows, then hourly rollups
        series = await ops.time_series("worker", period)
        assert sum(point.calls for point in series.points) == 2, period
        assert sum(point.errors for point in series.points) == 1, period
        assert sum(point.refused for point in series.points) == 3, period
        assert sum(point.cancelled for point in series.points) == 1, period

    exposition = await render_metrics(ops)
    assert 'tooldeck_tool_errors_total{server="worker",tool="add"} 0' in exposition
    assert 'tooldeck_tool_refused_total{server="worker",tool="add"} 1' in exposition
    assert 'tooldeck_tool_cancelled_total{server="worker",tool="sleep"} 1' in exposition
    assert 'tooldeck_tool_errors_total{server="worker",tool="fail"} 1' in exposition


async def _in_flight(runtime: Supervisor, server_id: str) -> bool:
    return runtime.call_gates.in_use(server_id)[0] > 0

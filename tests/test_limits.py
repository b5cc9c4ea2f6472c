"""Resource limits: concurrent calls queued to a bound then refused, and a memory-hungry
server restarted for staying over its RSS limit, with an event and an alert."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.core.errors import Busy, InvalidInput
from app.core.events import EventKind
from app.governance.alerts import RULE_RESOURCE_LIMIT, AlertEngine
from app.governance.limits_watchdog import ResourceWatchdog
from app.ops.facade import LocalOperations
from app.runtime.call_gates import CallGates
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import eventually, fast_supervisor, scripted


async def test_gate_queues_to_its_bound_then_refuses() -> None:
    gates = CallGates()
    gates.configure("s", 2, 1)
    release = asyncio.Event()
    entered = 0

    async def one() -> None:
        nonlocal entered
        async with gates.slot("s", "alpha"):
            entered += 1
            await release.wait()

    tasks = [asyncio.create_task(one()) for _ in range(3)]

    async def full() -> bool:
        return gates.in_use("s") == (2, 1)

    await eventually(full, within=5, every=0.01)
    assert entered == 2
    with pytest.raises(Busy, match="alpha is busy: 2 calls running and 1 queued"):
        async with gates.slot("s", "alpha"):
            pass
    release.set()
    await asyncio.gather(*tasks)
    assert entered == 3 and gates.in_use("s") == (0, 0)
    async with gates.slot("unlimited", "beta"):  # no gate: no waiting
        pass


async def test_concurrent_calls_beyond_the_limit_wait_then_are_refused(
    ops: LocalOperations,
) -> None:
    supervisor = fast_supervisor(ops)
    try:
        await ops.create_server(scripted("narrow"), actor="test")
        await ops.start_server("narrow", actor="test")
        limits = await ops.set_server_limits(
            "narrow", {"max_concurrent_calls": 1, "max_queued_calls": 1}, actor="cli:alice"
        )
        assert (limits.max_concurrent_calls, limits.max_queued_calls) == (1, 1)

        async def nap(seconds: float) -> Any:
            return await ops.call_tool("narrow", "sleep", {"seconds": seconds}, source="cli")

        await nap(0)  # warm the route
        server_id = (await ops.get_server("narrow")).id

        def in_use(expected: tuple[int, int]) -> Callable[[], Awaitable[bool]]:
            async def probe() -> bool:
                return supervisor.call_gates.in_use(server_id) == expected

            return probe

        finished: list[str] = []
        first = asyncio.create_task(nap(1))
        first.add_done_callback(lambda _task: finished.append("first"))
        await eventually(in_use((1, 0)), within=5, every=0.01)
        # A call with nothing to do, queued behind a long one: it ends after it, not before.
        second = asyncio.create_task(nap(0))
        second.add_done_callback(lambda _task: finished.append("second"))
        await eventually(in_use((1, 1)), within=5, every=0.01)
        with pytest.raises(Busy) as refused:
            await nap(0)
        assert "narrow is busy" in str(refused.value)
        results = await asyncio.gather(first, second)
        assert [result.is_error for result in results] == [False, False]
        assert finished == ["first", "second"]
        [entry] = [e for e in await ops.list_audit("narrow") if e.kind == "limits_changed"]
        assert entry.actor == "cli:alice" and entry.after == {
            "max_concurrent_calls": 1,
            "max_queued_calls": 1,
        }
    finally:
        await supervisor.shutdown()


async def test_memory_and_cpu_limits_are_for_stdio_servers(ops: LocalOperations) -> None:
    await ops.create_server(
        {"name": "remote", "transport": "streamable_http", "url": "http://x/mcp"}, actor="t"
    )
    with pytest.raises(InvalidInput):
        await ops.set_server_limits("remote", {"max_rss_mb": 100}, actor="t")
    with pytest.raises(InvalidInput):
        await ops.set_server_limits("remote", {"max_concurrent_calls": 0}, actor="t")
    await ops.set_server_limits("remote", {"max_concurrent_calls": 4}, actor="t")


async def test_a_server_over_its_memory_limit_is_restarted_with_an_event_and_an_alert(
    ops: LocalOperations,
) -> None:
    supervisor = fast_supervisor(ops)
    engine = AlertEngine(ops.db, ops.settings)
    watchdog = ResourceWatchdog(ops.db, supervisor, engine)
    try:
        spec = {"name": "hungry", "command": PYTHON, "args": [str(TEST_SERVERS / "hungry.py")]}
        await ops.create_server(spec, actor="test")
        await ops.start_server("hungry", actor="test")
        before = await ops.runtime_info("hungry")
        assert before.rss_bytes is not None and before.pid is not None
        ceiling = before.rss_bytes / 2**20 + 60
        await ops.set_server_limits(
            "hungry", {"max_rss_mb": ceiling, "sustain_s": 0.3}, actor="test"
        )
        # Under the limit: sampled, never restarted.
        for _ in range(3):
            assert await watchdog.sweep() == "1 watched"
        await ops.call_tool("hungry", "grow", {"mb": 120}, source="cli")

        async def restarted() -> bool:
            await watchdog.sweep()
            info = await ops.runtime_info("hungry")
            return info.pid is not None and info.pid != before.pid and info.status == "running"

        await eventually(restarted, within=20, every=0.1)
        [event] = await ops.list_events("hungry", kind=EventKind.LIMIT_EXCEEDED)
        assert "memory (RSS) limit" in event.message and event.actor == "system:limits"
        restart = await ops.list_events("hungry", kind=EventKind.RESTARTED)
        assert [item.actor for item in restart] == ["system:limits"]
        [alert] = await ops.list_alerts()
        assert alert.rule == RULE_RESOURCE_LIMIT and "memory (RSS) limit" in alert.message
        # The new process is small again: no second restart.
        for _ in range(5):
            assert await watchdog.sweep() == "1 watched"
    finally:
        await supervisor.shutdown()


async def test_a_server_over_its_cpu_limit_is_restarted(ops: LocalOperations) -> None:
    supervisor = fast_supervisor(ops)
    engine = AlertEngine(ops.db, ops.settings)
    watchdog = ResourceWatchdog(ops.db, supervisor, engine)
    try:
        spec = {"name": "busy", "command": PYTHON, "args": [str(TEST_SERVERS / "hungry.py")]}
        await ops.create_server(spec, actor="test")
        await ops.start_server("busy", actor="test")
        first = (await ops.runtime_info("busy")).pid
        # An idle server samples near 0%. A spinning thread on a crowded machine gets only its
        # share of a core, and one sample under the limit starts the sustain window again: so
        # the limit sits far below that share, and the spinning lasts as long as the process.
        await ops.set_server_limits("busy", {"max_cpu_percent": 5, "sustain_s": 0.6}, actor="t")
        await ops.call_tool("busy", "burn", {"seconds": 3600}, source="cli")

        async def restarted() -> bool:
            await watchdog.sweep()
            info = await ops.runtime_info("busy")
            return info.pid is not None and info.pid != first and info.status == "running"

        await eventually(restarted, within=60, every=0.2)
        [event] = await ops.list_events("busy", kind=EventKind.LIMIT_EXCEEDED)
        assert "CPU limit" in event.message
        [alert] = await ops.list_alerts()
        assert "CPU limit" in alert.message
    finally:
        await supervisor.shutdown()

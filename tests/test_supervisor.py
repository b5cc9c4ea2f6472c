"""The supervisor against real MCP servers (tests/servers/scripted.py): no protocol mocks."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from app.core.errors import Conflict, NotRunning, StartFailed
from app.ops.facade import LocalOperations
from app.runtime.supervisor import Supervisor
from storage.models import ServerTool, ToolServer
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import (
    alive,
    descendants,
    event_kinds,
    events_of,
    eventually,
    fast_supervisor,
    free_port,
    gone,
    listening,
    read_pids,
    scripted,
    status_is,
)


@pytest.fixture
async def runtime(ops: LocalOperations) -> AsyncIterator[Supervisor]:
    supervisor = fast_supervisor(ops)
    yield supervisor
    await supervisor.shutdown()
    assert descendants() == [], "a server process outlived the supervisor"


async def test_start_discovers_tools_then_stop_ends_the_whole_group(
    ops: LocalOperations, runtime: Supervisor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    # Auto-start off: a new auto-start server would start at once, by `system`.
    await ops.create_server(
        scripted("healthy", "--spawn-child", "--pid-file", str(pid_file), auto_start=False),
        actor="test",
    )
    server = await ops.start_server("healthy", actor="cli:ann")
    assert server.status == "running"
    assert server.consecutive_failures == 0
    assert server.last_startup_success is not None
    tools = {tool.name: tool for tool in await ops.list_tools("healthy")}
    assert {"echo", "add", "fail", "sleep", "hang", "add_tool", "remove_tool", "exit"} <= set(tools)
    assert all(tool.enabled and tool.is_available for tool in tools.values())
    assert tools["add"].input_schema is not None
    assert tools["add"].input_schema["required"] == ["a", "b"]
    kinds = await event_kinds(ops, "healthy")
    assert kinds[-3:] == ["starting", "tools_changed", "started"]
    started = (await events_of(ops, "healthy", "started"))[-1]
    assert started.actor == "cli:ann"
    assert "scripted 1.2.3" in started.message

    leader, grandchild = read_pids(pid_file)
    info = await ops.runtime_info("healthy")
    assert info.pid == leader
    assert info.rss_bytes and info.rss_bytes > 1_000_000
    assert info.processes == 2  # the server and the child it spawned
    assert info.protocol_version == "2025-11-25"
    tail = await ops.log_tail("healthy", 50)
    assert "scripted server ready" in tail

    health = await ops.check_health("healthy")
    assert health.is_running and health.is_responsive
    assert health.latency_ms is not None and health.latency_ms < 1000
    assert health.tools_count == len(tools)

    server = await ops.stop_server("healthy", actor="cli:ann")
    assert server.status == "stopped"
    assert not any(tool.is_available for tool in await ops.list_tools("healthy"))
    stopped = (await events_of(ops, "healthy", "stopped"))[-1]
    assert stopped.actor == "cli:ann"
    # The grandchild is in the server's process group: it goes too, though the leader exited
    # on its own when its stdin closed.
    assert await gone(leader, grandchild, within=3)
    assert (await ops.check_health("healthy")).is_running is False
    log_file = ops.settings.logs_dir / "healthy.log"
    assert "scripted server ready" in log_file.read_text()


async def test_slow_answers_degrade_and_recover(ops: LocalOperations, runtime: Supervisor) -> None:
    await ops.create_server(scripted("slowpoke"), actor="test")
    await ops.start_server("slowpoke", actor="test")
    ops.settings.degraded_latency_ms = 0.001
    health = await ops.check_health("slowpoke")
    assert health.is_responsive and health.status == "degraded"
    assert await status_is(ops, "slowpoke", "degraded")
    ops.settings.degraded_latency_ms = 60_000
    health = await ops.check_health("slowpoke")
    assert health.status == "running"
    assert (await event_kinds(ops, "slowpoke"))[-2:] == ["degraded", "recovered"]


async def test_missing_command_is_retried_with_backoff_then_auto_disabled(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(
        {"name": "ghost", "command": "tooldeck-no-such-command", "max_failures": 3}, actor="test"
    )
    with pytest.raises(StartFailed, match="command not found: tooldeck-no-such-command"):
        await ops.start_server("ghost", actor="test")

    async def disabled() -> bool:
        return not (await ops.get_server("ghost")).enabled

    await eventually(disabled, within=5)
    server = await ops.get_server("ghost")
    assert server.status == "error"
    assert server.consecutive_failures == 3
    assert server.last_startup_error == "command not found: tooldeck-no-such-command"
    assert server.disabled_reason == (
        "auto-disabled after 3 consecutive failures: command not found: tooldeck-no-such-command"
    )
    kinds = await event_kinds(ops, "ghost")
    assert kinds.count("start_failed") == 3
    assert kinds[-1] == "auto_disabled"
    # No more attempts once disabled: its lifecycle has ended, so nothing is left to retry.
    handle = runtime._handles[server.id]

    async def given_up() -> bool:
        return handle.task is None

    await eventually(given_up, within=5)
    assert (await event_kinds(ops, "ghost")).count("start_failed") == 3
    # And a start is refused with the reason.
    with pytest.raises(Conflict, match="auto-disabled"):
        await ops.start_server("ghost", actor="test")
    # A person enabling it again clears the count and the reason.
    server = await ops.enable_server("ghost", actor="test")
    assert server.consecutive_failures == 0 and server.disabled_reason is None


def test_backoff_doubles_from_one_second_to_sixty_with_jitter(ops: LocalOperations) -> None:
    supervisor = Supervisor(ops.db, ops.settings)
    for failures, nominal in [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60), (12, 60)]:
        delays = [supervisor._backoff(failures) for _ in range(50)]
        assert min(delays) >= nominal * 0.8 - 1e-9
        assert max(delays) <= min(60, nominal * 1.2) + 1e-9
        assert len(set(delays)) > 1


async def test_a_server_that_exits_at_start_reports_its_stderr(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(scripted("quitter", "--exit-at-start", "2", max_failures=1), actor="t")
    with pytest.raises(StartFailed) as caught:
        await ops.start_server("quitter", actor="test")
    assert "exited during start-up" in str(caught.value)
    assert "MISSING_API_KEY is not set" in str(caught.value)
    server = await ops.get_server("quitter")
    assert server.enabled is False and server.status == "error"
    assert "MISSING_API_KEY" in (server.last_startup_error or "")


async def test_slow_initialize_times_out_with_the_configured_limit(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(
        scripted("sloth", "--slow-start", "30", startup_timeout_s=1, max_failures=1), actor="t"
    )
    # The message names the limit the wait was given: one setting drives both.
    with pytest.raises(StartFailed, match=r"initialize timed out after 1 s"):
        await ops.start_server("sloth", actor="test")
    assert "warming up" in ((await ops.get_server("sloth")).last_startup_error or "")


async def test_a_killed_child_is_noticed_by_its_exit_and_restarted(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(scripted("victim"), actor="test")
    await ops.start_server("victim", actor="test")
    first = (await ops.runtime_info("victim")).pid
    assert first is not None
    server_id = (await ops.get_server("victim")).id
    os.kill(first, signal.SIGKILL)

    # No scheduler runs here, so no health probe: only the watch on the process can notice.
    async def noticed() -> bool:
        return runtime.connection(server_id) is None

    await eventually(noticed, within=5, every=0.005)
    assert (await ops.get_server("victim")).last_health_check is None

    async def crashed() -> bool:
        return "crashed" in await event_kinds(ops, "victim")

    await eventually(crashed, within=5)
    crash = (await events_of(ops, "victim", "crashed"))[-1]
    assert crash.message.startswith("exited unexpectedly")

    async def back() -> int | None:
        info = await ops.runtime_info("victim")
        return info.pid if info.status == "running" and info.pid != first else None

    second = await eventually(back, within=15)
    assert alive(second) and not alive(first)
    assert await event_kinds(ops, "victim") == [
        "created", "starting", "tools_changed", "started", "crashed", "starting", "started",
    ]  # fmt: skip

    async def reset() -> bool:  # a success that lasts clears the count
        return (await ops.get_server("victim")).consecutive_failures == 0

    await eventually(reset, within=5)


async def test_a_crash_after_some_calls_counts_and_recovers(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(scripted("brittle", "--crash-after", "3"), actor="test")
    await ops.start_server("brittle", actor="test")
    server_id = (await ops.get_server("brittle")).id
    for text in ("one", "two"):
        result = await runtime.call_tool(server_id, "echo", {"text": text}, timeout_s=5)
        assert result.content[0].text == text
    with pytest.raises(Exception, match="closed the connection during the call"):
        await runtime.call_tool(server_id, "echo", {"text": "three"}, timeout_s=5)

    async def failed_once() -> bool:
        return (await ops.get_server("brittle")).consecutive_failures == 1

    await eventually(failed_once, within=5)
    crash = (await events_of(ops, "brittle", "crashed"))[-1]
    assert "crashing on call 3" in crash.message  # the child's last stderr line
    await eventually(lambda: status_is(ops, "brittle", "running"), within=15)


async def test_a_hung_server_fails_its_probe_and_is_replaced(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    ops.settings.health_check_timeout_s = 0.5
    await ops.create_server(scripted("frozen"), actor="test")
    await ops.start_server("frozen", actor="test")
    server_id = (await ops.get_server("frozen")).id
    hung_pid = (await ops.runtime_info("frozen")).pid
    assert hung_pid is not None
    with pytest.raises(Exception, match=r"timed out after 0\.3 s"):
        await runtime.call_tool(server_id, "hang", {}, timeout_s=0.3)
    health = await ops.check_health("frozen")
    assert health.is_running and not health.is_responsive
    assert health.error_message == "health check timed out after 0.5 s"
    assert health.status == "error"

    async def replaced() -> bool:
        info = await ops.runtime_info("frozen")
        return info.status == "running" and info.pid not in (None, hung_pid)

    await eventually(replaced, within=20)
    assert not alive(hung_pid)
    failed = (await events_of(ops, "frozen", "health_failed"))[-1]
    assert failed.message == "health check timed out after 0.5 s"


async def test_garbage_on_stdout_is_logged_and_survived(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(scripted("chatty", "--garbage"), actor="test")
    server = await ops.start_server("chatty", actor="test")
    assert server.status == "running"
    tail = await ops.log_tail("chatty", 20)
    assert any("not MCP on stdout: Server starting..." in line for line in tail)
    assert (await ops.check_health("chatty")).is_responsive


async def test_list_changed_triggers_discovery_that_keeps_a_persons_settings(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(scripted("shifty"), actor="test")
    await ops.start_server("shifty", actor="test")
    server_id = (await ops.get_server("shifty")).id
    await ops.set_tool_enabled("echo", False, actor="test", server_ref="shifty")
    await ops.set_tool_bypass("add", True, actor="test", server_ref="shifty")
    async with ops.db.session() as session:
        await session.execute(
            update(ServerTool)
            .where(ServerTool.server_id == server_id, ServerTool.name == "fail")
            .values(display_name="Always fails")
        )

    await runtime.call_tool(server_id, "add_tool", {"name": "late"}, timeout_s=5)

    async def has_late() -> bool:
        tools = {tool.name: tool for tool in await ops.list_tools("shifty")}
        return "late" in tools and tools["late"].is_available

    await eventually(has_late, within=5)
    tools = {tool.name: tool for tool in await ops.list_tools("shifty")}
    assert tools["late"].enabled
    assert tools["echo"].enabled is False
    assert tools["add"].bypass_when_unavailable is True
    assert tools["fail"].display_name == "Always fails"

    await runtime.call_tool(server_id, "remove_tool", {"name": "late"}, timeout_s=5)

    async def late_gone() -> bool:
        tools = {tool.name: tool for tool in await ops.list_tools("shifty")}
        return not tools["late"].is_available

    await eventually(late_gone, within=5)
    changes = [event.message for event in await events_of(ops, "shifty", "tools_changed")]
    assert any("+late" in message for message in changes)
    assert any("-late" in message for message in changes)
    # A manual refresh finds the same listing and still keeps every setting.
    await ops.refresh_tools("shifty", actor="test")
    tools = {tool.name: tool for tool in await ops.list_tools("shifty")}
    assert tools["echo"].enabled is False and tools["fail"].display_name == "Always fails"
    assert tools["late"].is_available is False


async def test_streamable_http_server(ops: LocalOperations, runtime: Supervisor) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        str(TEST_SERVERS / "scripted.py"),
        "--http",
        str(port),
        stderr=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/mcp"

        await eventually(lambda: listening(port), within=15)
        await ops.create_server(
            {"name": "remote", "transport": "streamable_http", "url": url}, actor="test"
        )
        server = await ops.start_server("remote", actor="test")
        assert server.status == "running"
        assert "echo" in {tool.name for tool in await ops.list_tools("remote")}
        assert (await ops.check_health("remote")).is_responsive
        server_id = server.id
        result = await runtime.call_tool(server_id, "add", {"a": 2, "b": 40}, timeout_s=5)
        assert result.structured_content == {"result": 42}
        # The server goes away: the next probe fails, counts, and the supervisor retries.
        process.kill()
        await process.wait()
        health = await ops.check_health("remote")
        assert not health.is_responsive

        async def failing() -> bool:
            return (await ops.get_server("remote")).consecutive_failures >= 1

        await eventually(failing, within=10)
        await ops.stop_server("remote", actor="test")
        assert await status_is(ops, "remote", "stopped")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_shutdown_is_parallel_and_kills_a_child_that_ignores_sigterm(
    ops: LocalOperations, tmp_path: Path
) -> None:
    supervisor = fast_supervisor(ops)
    pid_files = {name: tmp_path / name for name in ("stubborn", "obstinate", "family")}
    for name in ("stubborn", "obstinate"):
        await ops.create_server(
            scripted(name, "--ignore-sigterm", "--pid-file", str(pid_files[name])), actor="t"
        )
    await ops.create_server(
        scripted("family", "--spawn-child", "--pid-file", str(pid_files["family"])), actor="t"
    )
    await asyncio.gather(*(ops.start_server(name, actor="t") for name in pid_files))
    pids = [pid for path in pid_files.values() for pid in read_pids(path)]
    shutting_down = asyncio.create_task(supervisor.shutdown())

    # Each stubborn one stays `stopping` until it is killed (stdin closed, a grace, SIGTERM
    # ignored, a grace, SIGKILL); one after the other, they would never be stopping together.
    async def stopping_together() -> bool:
        statuses = [(await ops.get_server(name)).status for name in ("stubborn", "obstinate")]
        return statuses == ["stopping", "stopping"]

    await eventually(stopping_together, within=10, every=0.02)
    await shutting_down
    assert await gone(*pids, within=2)
    assert descendants() == []
    for name in pid_files:
        server = await ops.get_server(name)
        assert server.status == "stopped"
        assert (await events_of(ops, name, "stopped"))[-1].message.endswith("(Tooldeck shut down)")
    with pytest.raises(NotRunning, match="shutting down"):
        await supervisor.start(server.id, actor="t")


async def test_startup_resets_stale_statuses_and_autostarts(ops: LocalOperations) -> None:
    tiny = {"command": PYTHON, "args": [str(TEST_SERVERS / "tiny.py")]}
    await ops.create_server({"name": "eager", **tiny}, actor="t")
    await ops.create_server({"name": "lazy", "auto_start": False, **tiny}, actor="t")
    await ops.create_server({"name": "off", "enabled": False, **tiny}, actor="t")
    async with ops.db.session() as session:
        # What a process killed with -9 leaves behind.
        await session.execute(update(ToolServer).values(status="running"))
        await session.execute(update(ServerTool).values(is_available=True))
    supervisor = fast_supervisor(ops)
    try:
        await supervisor.startup()
        assert await status_is(ops, "lazy", "stopped")
        assert await status_is(ops, "off", "stopped")
        stale = (await events_of(ops, "lazy", "stopped"))[-1]
        assert stale.message == "Tooldeck exited while lazy was running"
        await supervisor.wait_autostart()
        assert await status_is(ops, "eager", "running")
        assert [tool.name for tool in await ops.list_tools("eager")] == ["ping"]
    finally:
        await supervisor.shutdown()


async def test_disabling_a_running_server_stops_it(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    tiny = {"command": PYTHON, "args": [str(TEST_SERVERS / "tiny.py")]}
    await ops.create_server({"name": "tiny", **tiny}, actor="t")
    await ops.start_server("tiny", actor="t")
    pid = (await ops.runtime_info("tiny")).pid
    assert pid is not None
    server = await ops.disable_server("tiny", actor="cli:bob")
    assert server.enabled is False
    assert await status_is(ops, "tiny", "stopped")
    assert await gone(pid, within=3)
    # A person enabling an auto-start server brings it back.
    await ops.enable_server("tiny", actor="cli:bob")
    await eventually(lambda: status_is(ops, "tiny", "running"), within=15)


@pytest.mark.skipif(sys.platform != "linux", reason="process groups as on Linux")
async def test_bulk_restart_reports_per_server(ops: LocalOperations, runtime: Supervisor) -> None:
    tiny = {"command": PYTHON, "args": [str(TEST_SERVERS / "tiny.py")]}
    await ops.create_server({"name": "one", **tiny}, actor="t")
    await ops.create_server({"name": "missing", "command": "tooldeck-nope"}, actor="t")
    result = await ops.bulk({"server_ids": ["one", "missing"], "operation": "start"}, actor="t")
    assert result.successful == 1 and result.failed == 1
    assert result.errors == ["missing: missing: command not found: tooldeck-nope"]


async def test_stop_cuts_a_backoff_short(ops: LocalOperations) -> None:
    # Were the stop to wait out the backoff, or its own timeout, it would wait an hour.
    supervisor = fast_supervisor(ops, backoff_base_s=3600, backoff_max_s=3600, stop_timeout_s=3600)
    try:
        await ops.create_server(
            {"name": "waiting", "command": "tooldeck-nope", "max_failures": 5}, actor="t"
        )
        with pytest.raises(StartFailed):
            await ops.start_server("waiting", actor="t")
        info = await ops.runtime_info("waiting")
        assert info.status == "error" and info.next_retry_at is not None
        server = await ops.stop_server("waiting", actor="t")
        assert server.status == "stopped" and server.enabled
        assert (await ops.runtime_info("waiting")).next_retry_at is None
    finally:
        await supervisor.shutdown()


async def test_stop_during_a_slow_start(
    ops: LocalOperations, runtime: Supervisor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    # Were the stop to wait for the start to end, or for its own timeout, it would wait an hour.
    runtime.stop_timeout_s = 3600
    await ops.create_server(
        scripted("dawdler", "--slow-start", "3600", "--pid-file", str(pid_file)), actor="t"
    )
    starting = asyncio.create_task(ops.start_server("dawdler", actor="t"))
    await eventually(lambda: status_is(ops, "dawdler", "starting"), within=5)
    await eventually(lambda: asyncio.sleep(0, pid_file.exists()), within=5)
    await ops.stop_server("dawdler", actor="t")
    assert await status_is(ops, "dawdler", "stopped")
    with pytest.raises(StartFailed, match="stopped before it was running"):
        await starting
    assert await gone(*read_pids(pid_file), within=3)


async def test_a_changed_command_restarts_a_running_server(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    tiny = [str(TEST_SERVERS / "tiny.py")]
    await ops.create_server({"name": "mutable", "command": PYTHON, "args": tiny}, actor="t")
    await ops.start_server("mutable", actor="t")
    before = (await ops.runtime_info("mutable")).pid
    await ops.update_server("mutable", {"display_name": "Mutable"}, actor="t")
    assert (await ops.runtime_info("mutable")).pid == before  # not a connection setting
    await ops.update_server("mutable", {"args": [*tiny, "--unused"]}, actor="t")

    async def restarted() -> bool:
        info = await ops.runtime_info("mutable")
        return info.status == "running" and info.pid not in (None, before)

    await eventually(restarted, within=15)
    assert "restarted" in await event_kinds(ops, "mutable")


async def test_a_new_auto_start_server_starts_at_once(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(scripted("eager"), actor="test")
    await eventually(lambda: status_is(ops, "eager", "running"), within=30)
    started = (await events_of(ops, "eager", "started"))[-1]
    assert started.actor == "system"


async def test_a_server_failing_alike_each_time_is_described_once(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    """Three starts, the same stderr line each time: the reason quotes it once."""
    await ops.create_server(scripted("quitter", "--exit-at-start", "3", max_failures=3), actor="t")
    with pytest.raises(StartFailed):
        await ops.start_server("quitter", actor="test")

    async def disabled() -> str | None:
        return (await ops.get_server("quitter")).disabled_reason

    reason = await eventually(disabled, within=20)
    assert reason.count("MISSING_API_KEY is not set") == 1, reason


async def test_a_server_that_exits_at_start_says_its_exit_code(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    await ops.create_server(scripted("quitter", "--exit-at-start", "3", max_failures=1), actor="t")
    with pytest.raises(StartFailed, match=r"exit code 3"):
        await ops.start_server("quitter", actor="test")

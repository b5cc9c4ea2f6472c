"""The running core (supervisor + scheduler behind the facade) and the one-shot probe."""

from __future__ import annotations

import pytest

from app.core.settings import Settings
from app.ops.bootstrap import running_core
from app.ops.facade import LocalOperations
from tests.runtime_helpers import descendants, eventually, scripted, status_is


async def test_running_core_autostarts_calls_and_leaves_nothing_behind(
    settings: Settings,
) -> None:
    async with running_core(settings) as ops:
        assert ops.runtime is not None and ops.scheduler is not None
        await eventually(lambda: status_is(ops, "calculator", "running"), within=20)
        result = await ops.call_tool("calculator", "add", {"a": 2, "b": 3}, source="cli")
        assert result.content == [{"type": "text", "text": "5"}] and not result.is_error
        assert {job.name for job in await ops.scheduler_jobs()} == {
            "health",
            "capabilities",
            "cleanup",
            "resources",
            "alerts",
            "limits",
            "fleet",
        }
        health = await ops.run_job("health")
        assert health.last_outcome == "1 checked, 1 responsive"
        assert descendants() != []
    assert descendants() == []
    async with running_core(settings) as ops:
        # The next core sees a clean stop, not a crash; the calculator comes back.
        stopped = await ops.list_events("calculator", kind="stopped", limit=1)
        assert stopped[0].message == "stopped calculator (Tooldeck shut down)"
        # The call was metered, and flushed when the first core shut down.
        add = await ops.get_tool("add", "calculator")
        assert (add.total_calls, add.total_errors) == (1, 0)
        await eventually(lambda: status_is(ops, "calculator", "running"), within=20)
    assert descendants() == []


async def test_probe_reports_timings_identity_and_tools(ops: LocalOperations) -> None:
    await ops.seed_builtin_servers()
    report = await ops.probe("calculator")
    assert report.ok and report.error is None
    assert report.server_name == "tooldeck-calculator" and report.server_version == "1.0.0"
    assert report.protocol_version == "2025-11-25"
    assert report.connect_ms and report.list_tools_ms and report.ping_ms
    assert report.total_ms >= report.connect_ms
    assert "add" in [tool.name for tool in report.tools]
    # Nothing was stored: a probe is not a start.
    server = await ops.get_server("calculator")
    assert server.status == "stopped" and server.tools_count == 0
    assert descendants() == []


async def test_probe_of_an_unsaved_definition_that_fails(ops: LocalOperations) -> None:
    report = await ops.probe(scripted("draft", "--exit-at-start", "4"))
    assert not report.ok
    assert report.error is not None and report.error.startswith("the server exited during start-up")
    assert report.stderr_tail == ["fatal: MISSING_API_KEY is not set"]
    missing = await ops.probe({"name": "draft", "command": "tooldeck-missing-binary"})
    assert missing.error == "command not found: tooldeck-missing-binary"


@pytest.mark.parametrize("lines", [0, 10_001])
async def test_log_tail_bounds(ops: LocalOperations, lines: int) -> None:
    await ops.create_server(scripted("quiet"), actor="t")
    with pytest.raises(Exception, match="from 1 to 10000"):
        await ops.log_tail("quiet", lines)


async def test_log_tail_without_a_supervisor_reads_the_file(ops: LocalOperations) -> None:
    await ops.create_server(scripted("archived"), actor="t")
    log = ops.settings.logs_dir / "archived.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {n}\n" for n in range(1, 501)))
    assert await ops.log_tail("archived", 3) == ["line 498", "line 499", "line 500"]

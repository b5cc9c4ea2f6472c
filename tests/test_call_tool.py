"""The one tool-call path (issue 4 §1) against real servers: every outcome is metered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from app.core.errors import Conflict, InvalidInput, NotFound, NotRunning
from app.core.usage_record import UsageRecord
from app.ops.facade import LocalOperations
from app.runtime.supervisor import Supervisor
from storage.models import ServerTool, ToolServer
from tests.runtime_helpers import fast_supervisor, scripted, status_is


class Recorded:
    """Keeps what the call path hands to the usage recorder (app.runtime.usage.UsageRecorder)."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def record(self, record: UsageRecord) -> None:
        self.records.append(record)

    @property
    def last(self) -> Any:
        return self.records[-1]


@pytest.fixture
def recorder(ops: LocalOperations) -> Recorded:
    ops.recorder = recorder = Recorded()
    return recorder


@pytest.fixture
async def runtime(ops: LocalOperations) -> AsyncIterator[Supervisor]:
    supervisor = fast_supervisor(ops)
    yield supervisor
    await supervisor.shutdown()


async def test_refusals_are_clear_recorded_and_send_nothing(
    ops: LocalOperations, runtime: Supervisor, recorder: Recorded
) -> None:
    await ops.create_server(scripted("manual", auto_start=False), actor="t")
    # Tools are known from an earlier run; the server is not running now.
    await ops.start_server("manual", actor="t")
    await ops.stop_server("manual", actor="t")

    with pytest.raises(InvalidInput) as bad:
        await ops.call_tool("manual", "add", {"a": "two"}, source="cli")
    assert str(bad.value) == "arguments: a must be integer, not string; b is required"
    with pytest.raises(InvalidInput, match="must be a JSON object, not array"):
        await ops.call_tool("manual", "add", [1, 2], source="api")
    with pytest.raises(NotRunning, match="auto-start is off"):
        await ops.call_tool("manual", "add", {"a": 1, "b": 2}, source="cli")
    with pytest.raises(NotFound, match="no tool 'nope'"):
        await ops.call_tool("manual", "nope", {}, source="cli")

    await ops.set_tool_bypass("echo", True, actor="t", server_ref="manual")
    bypassed = await ops.call_tool("manual", "echo", {"text": "hi"}, source="gateway")
    assert bypassed.is_error
    assert bypassed.error_message == "echo is unavailable: its server is not running (bypass)"

    await ops.set_tool_enabled("add", False, actor="t", server_ref="manual")
    with pytest.raises(Conflict, match="tool add of manual is disabled"):
        await ops.call_tool("manual", "add", {"a": 1, "b": 2}, source="tui")
    await ops.disable_server("manual", actor="t")
    with pytest.raises(Conflict, match="server manual is disabled"):
        await ops.call_tool("manual", "echo", {"text": "x"}, source="cli")

    assert await status_is(ops, "manual", "stopped")  # nothing started anything
    outcomes = [(r.tool_name, r.success, r.outcome, r.source) for r in recorder.records]
    # Nothing reached the tool: each is a refusal, never the tool's error.
    assert outcomes == [
        ("add", False, "refused", "cli"),
        ("add", False, "refused", "api"),
        ("add", False, "refused", "cli"),
        ("nope", False, "refused", "cli"),
        ("echo", False, "refused", "gateway"),
        ("add", False, "refused", "tui"),
        ("echo", False, "refused", "cli"),
    ]
    first = recorder.records[0]
    assert first.error_message == "arguments: a must be integer, not string; b is required"
    assert first.server_id is not None and first.tool_id is not None
    assert recorder.records[3].tool_id is None  # an unknown tool has no id to record
    assert recorder.records[4].error_message == bypassed.error_message


async def test_on_demand_start_success_tool_error_and_timeout(
    ops: LocalOperations, runtime: Supervisor, recorder: Recorded
) -> None:
    await ops.create_server(scripted("worker", call_timeout_s=0.5), actor="t")
    # Never run, so its tools are not known yet: the call starts it, then finds the tool.
    first = await ops.call_tool("worker", "echo", {"text": "first"}, source="api")
    assert first.content == [{"type": "text", "text": "first"}]
    await ops.stop_server("worker", actor="t")

    # Stopped but auto-start: the call starts it again and waits.
    result = await ops.call_tool(
        "worker",
        "add",
        {"a": 2, "b": 3},
        source="cli",
        client_name="pytest",
        user="ann",
        conversation_id="c-1",
    )
    assert not result.is_error
    assert result.structured_content == {"result": 5}
    assert result.content == [{"type": "text", "text": "5"}]
    assert 0 < result.duration_ms < 500
    assert await status_is(ops, "worker", "running")
    starting = (await ops.list_events("worker", kind="starting", limit=1))[0]
    assert starting.actor == "cli:on-demand"
    ok = recorder.last
    assert (ok.success, ok.error_message, ok.client_name, ok.user_id, ok.conversation_id) == (
        True,
        None,
        "pytest",
        "ann",
        "c-1",
    )
    assert ok.response_time_ms == result.duration_ms
    assert ok.arguments == {"a": 2, "b": 3}
    assert ok.result is not None and ok.result["structured_content"] == {"result": 5}

    failed = await ops.call_tool("worker", "fail", {"message": "boom"}, source="api")
    assert failed.is_error and failed.error_message == "Error executing tool fail: boom"
    assert (recorder.last.success, recorder.last.error_message) == (False, failed.error_message)
    assert recorder.last.outcome == "error"

    slow = await ops.call_tool("worker", "sleep", {"seconds": 5}, source="api")
    assert slow.is_error
    assert slow.error_message == "sleep timed out after 0.5 s"
    assert 450 < slow.duration_ms < 2000
    assert (recorder.last.success, recorder.last.error_message) == (False, slow.error_message)
    assert recorder.last.outcome == "error"  # a timeout is the tool's failure
    # A slow tool is the tool's problem, not the server's: it keeps running and answering.
    again = await ops.call_tool("worker", "echo", {"text": "still here"}, source="api")
    assert again.content[0]["text"] == "still here"
    assert (await ops.get_server("worker")).consecutive_failures == 0
    assert len(recorder.records) == 5


async def test_calls_refuse_without_a_supervisor(ops: LocalOperations, recorder: Recorded) -> None:
    await ops.create_server(scripted("nowhere"), actor="t")
    async with ops.db.session() as session:
        server = await session.scalar(select(ToolServer).where(ToolServer.name == "nowhere"))
        assert server is not None
        session.add(ServerTool(server_id=server.id, name="echo", input_schema={"type": "object"}))
    with pytest.raises(NotRunning, match="no supervisor is running"):
        await ops.call_tool("nowhere", "echo", {}, source="cli")
    with pytest.raises(InvalidInput, match="use one of tui, api, cli, gateway"):
        await ops.call_tool("nowhere", "echo", {}, source="email")  # type: ignore[arg-type]
    assert [record.success for record in recorder.records] == [False]

"""Trim suggestions on a seeded dataset, and disabling the suggested set (audited)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from app.cli import main as cli_main
from app.core.errors import InvalidInput
from app.core.settings import Settings
from app.core.usage_record import UsageRecord
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from storage.models import ServerTool


async def seed(ops: LocalOperations, settings: Settings) -> dict[str, str]:
    """alpha: used (called 2 days ago), stale (called 40 days ago), never (never called),
    fresh (discovered yesterday, never called), off (disabled); beta: lonely (never called)."""
    now = datetime.now(UTC)
    ids: dict[str, str] = {}
    for server, tools in (
        ("alpha", ("used", "stale", "never", "fresh", "off")),
        ("beta", ("lonely",)),
    ):
        created = await ops.create_server({"name": server, "command": "x"}, actor="test")
        async with ops.db.session() as session:
            for name in tools:
                discovered = now - timedelta(days=1 if name == "fresh" else 60)
                tool = ServerTool(
                    server_id=created.id, name=name, enabled=name != "off", discovered_at=discovered
                )
                session.add(tool)
                await session.flush()
                ids[name] = tool.id
                ids[f"{name}.server"] = created.id
    async with UsageRecorder(ops.db, settings) as recorder:
        for name, days in (("used", 2), ("stale", 40)):
            recorder.record(
                UsageRecord(
                    ids[f"{name}.server"],
                    ids[name],
                    name,
                    now - timedelta(days=days),
                    5,
                    True,
                    None,
                    "api",
                )
            )
    return ids


async def test_suggestions_name_unused_enabled_tools_per_server(
    ops: LocalOperations, settings: Settings
) -> None:
    await seed(ops, settings)
    report = await ops.trim_suggestions(30)
    found = {server.server_name: server for server in report.servers}
    assert set(found) == {"alpha", "beta"}
    assert [tool.tool_name for tool in found["alpha"].tools] == ["never", "stale"]
    assert (found["alpha"].enabled_tools, found["alpha"].unused_tools) == (4, 2)
    assert found["alpha"].tools[1].last_called is not None
    assert (found["beta"].enabled_tools, found["beta"].unused_tools) == (1, 1)
    assert report.total_unused == 3
    # A wider window: the tool called 40 days ago counts as used.
    assert (await ops.trim_suggestions(60)).total_unused == 2
    with pytest.raises(InvalidInput):
        await ops.trim_suggestions(0)


async def test_disabling_the_suggested_set(ops: LocalOperations, settings: Settings) -> None:
    ids = await seed(ops, settings)
    result = await ops.disable_unused_tools(30, actor="cli:alice")
    assert sorted(tool.tool_name for tool in result.tools) == ["lonely", "never", "stale"]
    assert not (await ops.get_tool(ids["stale"])).enabled
    assert (await ops.get_tool(ids["used"])).enabled and (await ops.get_tool(ids["fresh"])).enabled
    assert (await ops.trim_suggestions(30)).total_unused == 0
    audit = [entry for entry in await ops.list_audit(actor="cli:alice")]
    assert len(audit) == 3 and {entry.kind for entry in audit} == {"tool_disabled"}


async def test_cli_trim_needs_yes_outside_a_terminal(
    ops: LocalOperations,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed(ops, settings)
    await ops.db.dispose()
    assert await asyncio.to_thread(cli_main, ["trim", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_unused"] == 3
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert await asyncio.to_thread(cli_main, ["trim", "disable"]) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert await asyncio.to_thread(cli_main, ["trim", "disable", "--yes"]) == 0
    assert "disabled 3 tools" in capsys.readouterr().out

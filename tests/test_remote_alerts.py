"""The audit/alert/limit/trim operations over HTTP give what the local facade gives."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from app.core.errors import InvalidInput, NotFound
from app.faces.http.api import create_app
from app.governance.alerts import AlertEngine, Finding
from app.ops.facade import LocalOperations
from app.ops.remote import RemoteOperations as Remote
from storage.models import ServerTool


@pytest.fixture
async def remote(ops: LocalOperations) -> AsyncIterator[Remote]:
    transport = httpx2.ASGITransport(app=create_app(ops, tokens=None))
    async with Remote("http://127.0.0.1", None, transport=transport) as client:
        yield client


async def test_remote_twins(ops: LocalOperations, remote: Remote) -> None:
    server = await ops.create_server(
        {"name": "alpha", "command": "python", "env": {"KEY": "hunter2"}}, actor="test"
    )
    async with ops.db.session() as session:
        session.add(ServerTool(server_id=server.id, name="echo", enabled=True))
    await AlertEngine(ops.db, ops.settings).apply(
        [Finding("server_down", f"server:{server.id}", "alpha is down", server_id=server.id)],
        ["server_down"],
    )
    [alert] = await remote.list_alerts()
    assert (await remote.ack_alert(alert.id, actor="cli:alice")).acknowledged_by == "cli:alice"
    assert [a.id for a in await remote.list_alerts(include_resolved=True)] == [alert.id]
    with pytest.raises(NotFound):
        await remote.ack_alert(404, actor="cli:alice")

    limits = await remote.set_server_limits(
        "alpha", {"max_rss_mb": 256, "max_concurrent_calls": 2}, actor="cli:alice"
    )
    assert limits == await ops.get_server_limits("alpha") == await remote.get_server_limits("alpha")
    with pytest.raises(InvalidInput):
        await remote.set_server_limits("alpha", {"max_rss_mb": -1}, actor="cli:alice")

    tool = await remote.set_tool_auto_disable("echo", 5, actor="cli:alice", server_ref="alpha")
    assert tool.name == "echo" and (await ops.get_tool("echo", "alpha")).id == tool.id

    audit = await remote.list_audit("alpha", since="1h")
    assert audit == await ops.list_audit("alpha", since="1h")
    assert {entry.actor for entry in audit} == {"cli:alice", "test"}
    assert "hunter2" not in str([entry.model_dump() for entry in audit])

    local_trim, remote_trim = await ops.trim_suggestions(30), await remote.trim_suggestions(30)
    assert remote_trim.servers == local_trim.servers and remote_trim.days == 30
    assert (await remote.disable_unused_tools(30, actor="cli:alice")).disabled == 0
    assert await remote.evaluate_alerts() == await ops.list_alerts()

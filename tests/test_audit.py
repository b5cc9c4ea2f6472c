"""The audit trail: every change names who, what, when, before and after, secrets masked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx2
import pytest

from app.cli import main as cli_main
from app.core.errors import InvalidInput, NotFound
from app.faces.http.api import create_app
from app.ops.facade import LocalOperations
from storage.models import ServerTool
from tests.runtime_helpers import eventually, fast_supervisor

SECRET = "s3cret-value"


async def make_server(ops: LocalOperations) -> str:
    server = await ops.create_server(
        {"name": "alpha", "command": "python", "env": {"API_KEY": SECRET}}, actor="cli:alice"
    )
    return server.id


@pytest.fixture
async def api(ops: LocalOperations) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=create_app(ops, tokens=None)),
        base_url="http://127.0.0.1",
    ) as client:
        yield client


async def test_changes_are_audited_with_before_after_and_masked_secrets(
    ops: LocalOperations,
) -> None:
    server_id = await make_server(ops)
    await ops.update_server(
        "alpha", {"env": {"API_KEY": "new-secret", "MODE": "x"}, "call_timeout_s": 5}, actor="api"
    )
    await ops.disable_server("alpha", actor="cli:bob")
    async with ops.db.session() as session:
        session.add(ServerTool(server_id=server_id, name="echo", enabled=True))
    await ops.set_tool_enabled("echo", False, actor="tui:carol", server_ref="alpha")

    entries = await ops.list_audit("alpha")
    text = json.dumps([entry.model_dump(mode="json") for entry in entries])
    assert SECRET not in text and "new-secret" not in text
    by_kind = {entry.kind: entry for entry in entries}
    created = by_kind["created"]
    assert created.actor == "cli:alice" and created.before is None
    assert created.after is not None and created.after["env"] == {"API_KEY": "********"}
    updated = by_kind["updated"]
    assert updated.actor == "api"
    assert updated.before == {"env": {"API_KEY": "********"}, "call_timeout_s": 60.0}
    assert updated.after == {
        "env": {"API_KEY": "********", "MODE": "********"},
        "call_timeout_s": 5.0,
    }
    assert updated.secrets_changed == ["env.API_KEY", "env.MODE"]
    disabled = by_kind["disabled"]
    assert (disabled.actor, disabled.before, disabled.after) == (
        "cli:bob",
        {"enabled": True},
        {"enabled": False},
    )
    tool = by_kind["tool_disabled"]
    assert tool.actor == "tui:carol" and tool.after == {"enabled": False}

    await ops.delete_server("alpha", actor="cli:dave")
    deleted = (await ops.list_audit(actor="cli:dave"))[0]
    assert deleted.kind == "deleted" and deleted.after is None
    assert deleted.before is not None
    assert deleted.before["env"] == {"API_KEY": "********", "MODE": "********"}


async def test_imports_are_audited(ops: LocalOperations) -> None:
    document = {"mcpServers": {"beta": {"command": "node", "env": {"TOKEN": SECRET}}}}
    await ops.import_servers(document, actor="cli:importer")
    document["mcpServers"]["beta"]["env"]["TOKEN"] = "other"
    await ops.import_servers(document, on_conflict="overwrite", actor="cli:importer")
    entries = await ops.list_audit("beta")
    assert [entry.kind for entry in entries] == ["updated", "created"]
    assert entries[0].secrets_changed == ["env.TOKEN"]
    assert SECRET not in json.dumps([entry.model_dump(mode="json") for entry in entries])


async def test_since_filter_and_bad_input(ops: LocalOperations) -> None:
    await make_server(ops)
    assert len(await ops.list_audit(since="1h")) == 1
    assert await ops.list_audit(since="2999-01-01T00:00:00") == []
    with pytest.raises(InvalidInput):
        await ops.list_audit(since="yesterday")
    with pytest.raises(NotFound):
        await ops.list_audit("nope")


async def test_auto_disable_by_the_supervisor_is_audited_as_system(ops: LocalOperations) -> None:
    supervisor = fast_supervisor(ops)
    try:
        await ops.create_server(
            {"name": "ghost", "command": "tooldeck-no-such-command", "max_failures": 2},
            actor="test",
        )
        await supervisor.intent_changed((await ops.get_server("ghost")).id)

        async def disabled() -> bool:
            return not (await ops.get_server("ghost")).enabled

        await eventually(disabled, within=10)
        entry = next(e for e in await ops.list_audit("ghost") if e.kind == "auto_disabled")
        assert entry.actor == "system"
        assert entry.before == {"enabled": True, "disabled_reason": None}
        assert entry.after is not None and entry.after["enabled"] is False
    finally:
        await supervisor.shutdown()


async def test_audit_over_http_and_cli(
    ops: LocalOperations, api: httpx2.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await make_server(ops)
    await ops.disable_server("alpha", actor="cli:bob")
    response = await api.get("/api/v1/audit", params={"server": "alpha", "since": "7d"})
    assert response.status_code == 200
    body = response.json()
    assert [entry["actor"] for entry in body] == ["cli:bob", "cli:alice"]
    assert SECRET not in response.text
    assert (await api.get("/api/v1/audit", params={"server": "nope"})).status_code == 404

    await ops.db.dispose()  # the CLI opens the same database file itself
    code = await _run_cli(["audit", "--server", "alpha", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert [entry["kind"] for entry in json.loads(out)] == ["disabled", "created"]
    assert SECRET not in out


async def _run_cli(argv: list[str]) -> int:
    import asyncio

    # The CLI runs its own event loop: on a thread, so this test's loop is not nested.
    return await asyncio.to_thread(cli_main, argv)

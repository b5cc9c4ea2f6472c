"""The operations facade: validation, conflicts, masking, events, bulk, built-ins."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.schemas import MASK
from app.ops.facade import LocalOperations
from storage.models import ServerEvent, ServerTool, ToolServer

ACTOR = "test:alice"


def stdio(name: str = "demo", **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": "python", "args": ["-m", "x"], **fields}


async def count_servers(ops: LocalOperations) -> int:
    async with ops.db.session() as session:
        return (await session.execute(select(func.count(ToolServer.id)))).scalar_one()


async def test_create_get_list_by_id_and_name(ops: LocalOperations) -> None:
    created = await ops.create_server(stdio(display_name="Demo"), actor=ACTOR)
    assert created.status == "stopped"
    assert created.created_by == ACTOR
    assert (await ops.get_server("demo")).id == created.id
    assert (await ops.get_server(created.id)).name == "demo"
    assert [s.name for s in await ops.list_servers()] == ["demo"]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (stdio(name="Bad Name"), "name", "lowercase letters"),
        (stdio(name="x" * 65), "name", "lowercase letters"),
        (stdio(name=""), "name", "lowercase letters"),
        ({"name": "a"}, "command", "stdio server needs a command"),
        ({"name": "a", "transport": "streamable_http"}, "url", "http:// or https://"),
        ({"name": "a", "transport": "sse", "url": "ftp://host/x"}, "url", "http:// or https://"),
        ({"name": "a", "transport": "sse", "url": "http://"}, "url", "with a host"),
        (stdio(env={"1BAD": "v"}), "env", "not a valid environment variable name"),
        (stdio(env={"A-B": "v"}), "env", "not a valid environment variable name"),
        (stdio(headers={"Bad Header": "v"}), "headers", "not a valid header name"),
        (stdio(max_failures=0), "max_failures", "greater than or equal to 1"),
        (stdio(max_failures=11), "max_failures", "less than or equal to 10"),
        (stdio(transport="websocket"), "transport", "'stdio'"),
        (stdio(colour="blue"), "colour", "unknown field"),
        (stdio(args="-m x"), "args", "valid list"),
        (stdio(startup_timeout_s=0), "startup_timeout_s", "greater than 0"),
    ],
)
async def test_bad_input_names_the_field_and_writes_nothing(
    ops: LocalOperations, data: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ops.create_server(data, actor=ACTOR)
    assert caught.value.field == field
    assert message in caught.value.message
    assert caught.value.status_code == 422
    assert await count_servers(ops) == 0


async def test_duplicate_name_is_a_conflict(ops: LocalOperations) -> None:
    await ops.create_server(stdio(), actor=ACTOR)
    with pytest.raises(Conflict, match="already exists") as caught:
        await ops.create_server(stdio(), actor=ACTOR)
    assert caught.value.status_code == 409
    assert await count_servers(ops) == 1


async def test_unknown_server_is_not_found(ops: LocalOperations) -> None:
    with pytest.raises(NotFound):
        await ops.get_server("nope")
    with pytest.raises(NotFound):
        await ops.update_server("nope", {"description": "x"}, actor=ACTOR)
    with pytest.raises(NotFound):
        await ops.list_tools("nope")


async def test_secrets_are_masked_unless_revealed(ops: LocalOperations) -> None:
    await ops.create_server(
        stdio(env={"API_KEY": "s3cret"}, headers={"Authorization": "Bearer t"}), actor=ACTOR
    )
    masked = await ops.get_server("demo")
    assert masked.env == {"API_KEY": MASK}
    assert masked.headers == {"Authorization": MASK}
    assert "s3cret" not in masked.model_dump_json()
    assert all("s3cret" not in s.model_dump_json() for s in await ops.list_servers())
    revealed = await ops.get_server("demo", reveal=True)
    assert revealed.env == {"API_KEY": "s3cret"}


async def test_update_keeps_masked_values_and_validates_the_result(ops: LocalOperations) -> None:
    await ops.create_server(stdio(env={"API_KEY": "s3cret"}), actor=ACTOR)
    shown = await ops.get_server("demo")
    await ops.update_server("demo", {"env": {**shown.env, "MODE": "fast"}}, actor=ACTOR)
    assert (await ops.get_server("demo", reveal=True)).env == {"API_KEY": "s3cret", "MODE": "fast"}

    with pytest.raises(InvalidInput) as caught:
        await ops.update_server("demo", {"transport": "sse"}, actor=ACTOR)
    assert caught.value.field == "url"
    with pytest.raises(InvalidInput, match="cannot be changed"):
        await ops.update_server("demo", {"name": "other"}, actor=ACTOR)
    assert (await ops.get_server("demo")).transport == "stdio"


async def test_every_change_writes_an_event_with_its_actor(ops: LocalOperations) -> None:
    await ops.create_server(stdio(), actor=ACTOR)
    await ops.update_server("demo", {"description": "new"}, actor="cli:bob")
    await ops.disable_server("demo", actor="api:ci")
    await ops.enable_server("demo", actor="tui:carol")
    await ops.delete_server("demo", actor=ACTOR)
    events = await ops.list_events()
    assert [(e.kind, e.actor) for e in reversed(events)] == [
        ("created", ACTOR),
        ("updated", "cli:bob"),
        ("disabled", "api:ci"),
        ("enabled", "tui:carol"),
        ("deleted", ACTOR),
    ]
    assert "description" in events[-2].message


async def test_enable_clears_a_system_disable(ops: LocalOperations) -> None:
    await ops.create_server(stdio(), actor=ACTOR)
    await ops.set_server_enabled("demo", False, actor="system", reason="auto-disabled: boom")
    disabled = await ops.get_server("demo")
    assert (disabled.enabled, disabled.disabled_reason) == (False, "auto-disabled: boom")
    enabled = await ops.enable_server("demo", actor=ACTOR)
    assert (enabled.enabled, enabled.disabled_reason, enabled.consecutive_failures) == (
        True,
        None,
        0,
    )


async def test_tools_enable_disable_and_bypass(ops: LocalOperations) -> None:
    server = await ops.create_server(stdio(), actor=ACTOR)
    async with ops.db.session() as session:
        session.add(ServerTool(server_id=server.id, name="add"))
    tool = (await ops.list_tools("demo"))[0]
    assert (tool.enabled, tool.bypass_when_unavailable) == (True, False)
    await ops.set_tool_enabled("add", False, actor=ACTOR, server_ref="demo")
    await ops.set_tool_bypass(tool.id, True, actor=ACTOR)
    tool = await ops.get_tool(tool.id)
    assert (tool.enabled, tool.bypass_when_unavailable, tool.server_name) == (False, True, "demo")
    with pytest.raises(NotFound):
        await ops.set_tool_enabled("nope", True, actor=ACTOR, server_ref="demo")
    kinds = [e.kind for e in await ops.list_events("demo")]
    assert "tool_disabled" in kinds and "tool_bypass" in kinds


async def test_list_filters(ops: LocalOperations) -> None:
    await ops.create_server(stdio("alpha", description="Search the web"), actor=ACTOR)
    await ops.create_server(stdio("beta", enabled=False), actor=ACTOR)
    assert [s.name for s in await ops.list_servers(enabled=False)] == ["beta"]
    assert [s.name for s in await ops.list_servers(text="WEB")] == ["alpha"]
    assert [s.name for s in await ops.list_servers(status="stopped")] == ["alpha", "beta"]
    with pytest.raises(InvalidInput) as caught:
        await ops.list_servers(status="sleeping")
    assert caught.value.field == "status"


async def test_bulk_reports_per_server_and_rejects_unknown_operations(ops: LocalOperations) -> None:
    await ops.create_server(stdio("one"), actor=ACTOR)
    await ops.create_server(stdio("two"), actor=ACTOR)
    result = await ops.bulk(
        {"server_ids": ["one", "two", "ghost"], "operation": "disable"}, actor=ACTOR
    )
    assert (result.total_requested, result.successful, result.failed) == (3, 2, 1)
    assert result.errors == ["ghost: no server 'ghost'"]
    assert [s.enabled for s in await ops.list_servers()] == [False, False]

    with pytest.raises(InvalidInput) as caught:
        await ops.bulk({"server_ids": ["one"], "operation": "explode"}, actor=ACTOR)
    assert caught.value.field == "operation"

    no_runtime = await ops.bulk({"server_ids": ["one"], "operation": "start"}, actor=ACTOR)
    assert no_runtime.failed == 1 and "no supervisor" in no_runtime.results[0].message


async def test_builtins_are_seeded_once_and_cannot_be_deleted(
    ops: LocalOperations, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops.settings.mcp_servers = ["calculator", "filesystem", "browser"]
    assert sorted(await ops.seed_builtin_servers()) == ["browser", "calculator", "filesystem"]
    assert await ops.seed_builtin_servers() == []
    servers = {s.name: s for s in await ops.list_servers()}
    assert all(s.is_builtin for s in servers.values())
    assert servers["calculator"].args == ["-m", "app.builtin.calculator"]
    assert (ops.settings.data_dir / "files").is_dir()
    browser = servers["browser"]
    assert not browser.enabled and "BRAVE_API_KEY" in (browser.disabled_reason or "")
    with pytest.raises(Conflict, match="built-in"):
        await ops.delete_server("calculator", actor=ACTOR)
    await ops.disable_server("calculator", actor=ACTOR)


async def test_brave_key_from_the_environment_enables_browser(
    ops: LocalOperations, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAVE_API_KEY", "k")
    ops.settings.mcp_servers = ["browser"]
    await ops.seed_builtin_servers()
    browser = await ops.get_server("browser", reveal=True)
    assert browser.enabled and browser.env == {"BRAVE_API_KEY": "k"}


async def test_mcp_disabled_seeds_nothing(ops: LocalOperations) -> None:
    ops.settings.mcp_enabled = False
    assert await ops.seed_builtin_servers() == []
    assert await count_servers(ops) == 0


async def test_events_limit_is_validated(ops: LocalOperations) -> None:
    with pytest.raises(InvalidInput):
        await ops.list_events(limit=0)
    async with ops.db.session() as session:
        assert (await session.execute(select(func.count(ServerEvent.id)))).scalar_one() == 0

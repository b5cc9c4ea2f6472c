"""One contract, two facades: the in-process `Operations` and `RemoteOperations` over a daemon.

Each test runs twice on each backend (SQLite, PostgreSQL): against the operations with a live
supervisor in this process, and against `app/remote.py` talking HTTP to a real
`tooldeck --headless` on a free port of 127.0.0.1. Both must answer with the same models and raise
the same `app.core.errors` exceptions. The two cores of a backend are shared by the tests of this
module (starting one costs a second or two), so every test makes its own uniquely named servers.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.core.access import FILE_TOKEN_NAME, acting_as
from app.core.errors import Conflict, InvalidInput, NotFound, NotRunning
from app.core.schemas import ToolServerResponse
from app.core.settings import load_settings
from app.ops.bootstrap import running_core
from app.ops.protocol import Operations as Facade
from app.ops.remote import RemoteOperations
from tests.conftest import stdio_server_spec
from tests.daemon_helpers import Daemon, daemon_env, start_daemon

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.both_backends]

_names = itertools.count(1)


def unique(prefix: str = "srv") -> str:
    return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="module")
def database_env(backend: str, request: pytest.FixtureRequest) -> Iterator[Callable[[], dict]]:
    """Makes the environment of one facade's database: none for SQLite (the data dir's own
    file), a fresh database for PostgreSQL. Those are dropped with the module."""
    made: list[str] = []

    def make() -> dict[str, str]:
        if backend == "sqlite":
            return {}
        url = request.getfixturevalue("new_pg_database")()
        made.append(url)
        return {"TOOLDECK_DATABASE_URL": url}

    yield make
    for url in made:
        request.getfixturevalue("pg").drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(scope="module")
def remote_daemon(
    tmp_path_factory: pytest.TempPathFactory, database_env: Callable[[], dict]
) -> Iterator[Daemon]:
    data_dir = tmp_path_factory.mktemp("remote") / "home"
    daemon = start_daemon(data_dir, env=daemon_env(data_dir, **database_env()))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["local", "remote"])
async def ops(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_env: Callable[[], dict],
) -> AsyncIterator[Facade]:
    if request.param == "remote":
        daemon: Daemon = request.getfixturevalue("remote_daemon")
        async with RemoteOperations(daemon.url, daemon.token) as remote:
            yield remote
        return
    data_dir = tmp_path_factory.mktemp("local") / "home"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in daemon_env(data_dir, **database_env()).items():
            patch.setenv(key, value)
        settings = load_settings(data_dir)
        async with running_core(settings) as local:
            yield local


async def running(ops: Facade, name: str, timeout_s: float = 30.0) -> ToolServerResponse:
    """The server once the supervisor reports it running."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        server = await ops.get_server(name)
        if server.status == "running" and server.tools_count:
            return server
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} is {server.status}: {server.last_startup_error}")
        await asyncio.sleep(0.05)


def tiny(name: str, **fields: Any) -> dict[str, Any]:
    return stdio_server_spec(name, "tiny", **fields)


def recorded(ops: Facade, actor: str) -> str:
    """The actor an event names: over HTTP, the admin token acting on behalf of the caller."""
    return acting_as(FILE_TOKEN_NAME, actor) if isinstance(ops, RemoteOperations) else actor


# ---- create, read, update, delete -----------------------------------------------------------


async def test_crud_by_name_and_by_id_with_masked_secrets(ops: Facade) -> None:
    name = unique()
    created = await ops.create_server(
        tiny(name, auto_start=False, env={"API_KEY": "s3cret"}, description="first"),
        actor="cli:test",
    )
    assert created.name == name and created.env == {"API_KEY": "********"}
    assert created.created_by == recorded(ops, "cli:test")

    by_name, by_id = await ops.get_server(name), await ops.get_server(created.id)
    assert by_name == by_id
    assert (await ops.get_server(name, reveal=True)).env == {"API_KEY": "s3cret"}

    listed = await ops.list_servers(text=name)
    assert [server.name for server in listed] == [name]
    assert listed[0].env == {"API_KEY": "********"}

    # A masked value sent back means "unchanged": a GET can be PUT back as it is.
    updated = await ops.update_server(
        created.id, {"description": "second", "env": {"API_KEY": "********"}}, actor="cli:test"
    )
    assert updated.description == "second"
    assert (await ops.get_server(name, reveal=True)).env == {"API_KEY": "s3cret"}

    await ops.delete_server(name, actor="cli:test")
    with pytest.raises(NotFound, match=name):
        await ops.get_server(name)


async def test_list_filters(ops: Facade) -> None:
    on, off = unique("filter"), unique("filter")
    await ops.create_server(tiny(on, auto_start=False), actor="t")
    await ops.create_server(tiny(off, auto_start=False, enabled=False), actor="t")
    enabled = {server.name for server in await ops.list_servers(enabled=True, text="filter")}
    disabled = {server.name for server in await ops.list_servers(enabled=False, text="filter")}
    assert on in enabled and off not in enabled
    assert off in disabled and on not in disabled
    stopped = await ops.list_servers(status="stopped", text="filter")
    assert {on, off} <= {server.name for server in stopped}


async def test_duplicate_name_is_a_conflict_naming_the_field(ops: Facade) -> None:
    name = unique()
    await ops.create_server(tiny(name, auto_start=False), actor="t")
    with pytest.raises(Conflict) as caught:
        await ops.create_server(tiny(name, auto_start=False), actor="t")
    assert caught.value.field == "name"
    assert "already exists" in caught.value.message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "Bad Name", "command": "x"}, "name"),
        ({"name": "ok"}, "command"),
        ({"name": "ok", "transport": "sse", "url": "nope"}, "url"),
        ({"name": "ok", "command": "x", "max_failures": 11}, "max_failures"),
        ({"name": "ok", "command": "x", "env": {"1X": "y"}}, "env"),
        ({"name": "ok", "command": "x", "surprise": 1}, "surprise"),
    ],
)
async def test_invalid_input_names_the_field(ops: Facade, data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ops.create_server(data, actor="t")
    assert caught.value.field == field


async def test_invalid_updates_and_queries_name_the_field(ops: Facade) -> None:
    name = unique()
    await ops.create_server(tiny(name, auto_start=False), actor="t")
    with pytest.raises(InvalidInput) as caught:
        await ops.update_server(name, {"name": "other"}, actor="t")
    assert caught.value.field == "name"
    with pytest.raises(InvalidInput) as caught:
        await ops.update_server(name, {"max_failures": 0}, actor="t")
    assert caught.value.field == "max_failures"
    with pytest.raises(InvalidInput) as caught:
        await ops.list_servers(status="sleeping")
    assert caught.value.field == "status"
    with pytest.raises(InvalidInput) as caught:
        await ops.list_events(limit=0)
    assert caught.value.field == "limit"


async def test_unknown_ids_are_not_found(ops: Facade) -> None:
    for call in (
        ops.get_server("ghost"),
        ops.update_server("ghost", {"description": "x"}, actor="t"),
        ops.delete_server("ghost", actor="t"),
        ops.enable_server("ghost", actor="t"),
        ops.start_server("ghost", actor="t"),
        ops.list_tools("ghost"),
        ops.list_events("ghost"),
        ops.get_tool("nope", "calculator"),
        ops.get_tool("no-such-tool-id"),
        ops.set_tool_enabled("nope", False, actor="t", server_ref="calculator"),
    ):
        with pytest.raises(NotFound):
            await call


async def test_builtin_cannot_be_deleted(ops: Facade) -> None:
    with pytest.raises(Conflict, match="built-in"):
        await ops.delete_server("calculator", actor="t")


# ---- control -------------------------------------------------------------------------------


async def test_enable_and_disable_with_a_reason(ops: Facade) -> None:
    name = unique()
    await ops.create_server(tiny(name, auto_start=False), actor="t")
    disabled = await ops.set_server_enabled(name, False, actor="t", reason="maintenance")
    assert (disabled.enabled, disabled.disabled_reason) == (False, "maintenance")
    enabled = await ops.enable_server(name, actor="t")
    assert (enabled.enabled, enabled.disabled_reason) == (True, None)
    assert (await ops.disable_server(name, actor="t")).enabled is False


async def test_start_stop_restart_and_refresh(ops: Facade) -> None:
    name = unique("ctl")
    await ops.create_server(tiny(name, auto_start=False), actor="t")
    await ops.start_server(name, actor="t")
    started = await running(ops, name)
    assert started.tools_count == 1
    restarted = await ops.restart_server(name, actor="t")
    assert restarted.name == name
    await running(ops, name)
    refreshed = await ops.refresh_tools(name, actor="t")
    assert refreshed.tools_count == 1
    stopped = await ops.stop_server(name, actor="t")
    assert stopped.status == "stopped"


# ---- tools ---------------------------------------------------------------------------------


async def test_tools_by_name_and_id(ops: Facade) -> None:
    await running(ops, "calculator")
    tools = await ops.list_tools("calculator")
    names = {tool.name for tool in tools}
    assert {"add", "divide"} <= names
    add = next(tool for tool in tools if tool.name == "add")
    assert await ops.get_tool(add.id) == await ops.get_tool("add", "calculator")
    assert add.server_name == "calculator" and add.input_schema

    off = await ops.set_tool_enabled("add", False, actor="t", server_ref="calculator")
    assert off.enabled is False
    on = await ops.set_tool_enabled(add.id, True, actor="t")
    assert on.enabled is True
    bypass = await ops.set_tool_bypass("add", True, actor="t", server_ref="calculator")
    assert bypass.bypass_when_unavailable is True
    assert (await ops.set_tool_bypass(add.id, False, actor="t")).bypass_when_unavailable is False


# ---- bulk and events -----------------------------------------------------------------------


async def test_bulk_reports_each_server(ops: Facade) -> None:
    first, second = unique("bulk"), unique("bulk")
    for name in (first, second):
        await ops.create_server(tiny(name, auto_start=False), actor="t")
    result = await ops.bulk(
        {"server_ids": [first, second, "ghost", first], "operation": "disable"}, actor="t"
    )
    assert (result.total_requested, result.successful, result.failed) == (3, 2, 1)
    assert [item.server_id for item in result.results if not item.success] == ["ghost"]
    assert not (await ops.get_server(first)).enabled
    with pytest.raises(InvalidInput) as caught:
        await ops.bulk({"server_ids": [first], "operation": "explode"}, actor="t")
    assert caught.value.field == "operation"
    with pytest.raises(InvalidInput) as caught:
        await ops.bulk({"server_ids": [], "operation": "stop"}, actor="t")
    assert caught.value.field == "server_ids"


async def test_events_name_who_did_what(ops: Facade) -> None:
    name = unique("ev")
    await ops.create_server(tiny(name, auto_start=False), actor="cli:alice")
    await ops.disable_server(name, actor="cli:bob")
    events = await ops.list_events(name)
    assert [(event.kind, event.actor) for event in events] == [
        ("disabled", recorded(ops, "cli:bob")),
        ("created", recorded(ops, "cli:alice")),
    ]
    assert all(event.server_name == name for event in events)
    everything = await ops.list_events(kind="disabled", limit=5)
    assert everything and all(event.kind == "disabled" for event in everything)


# ---- import and export ---------------------------------------------------------------------


async def test_import_then_export(ops: Facade, tmp_path: Path) -> None:
    name = unique("imp")
    document = {"mcpServers": {name: {"command": "python", "args": ["-V"], "env": {"K": "v"}}}}
    dry = await ops.import_servers(document, dry_run=True, actor="t")
    assert dry.dry_run and dry.created == 1
    with pytest.raises(NotFound):
        await ops.get_server(name)
    report = await ops.import_servers(document, actor="t")
    assert report.created == 1 and report.items[0].server_id
    again = await ops.import_servers(document, on_conflict="skip", actor="t")
    assert again.created == 0
    with pytest.raises(InvalidInput):
        await ops.import_servers(["not", "a", "config"], actor="t")
    with pytest.raises(InvalidInput) as caught:
        await ops.import_servers(document, on_conflict="merge", actor="t")  # type: ignore[arg-type]
    assert caught.value.field == "on_conflict"

    exported = await ops.export_servers([name])
    assert exported["mcpServers"][name]["env"] == {"K": "********"}
    revealed = await ops.export_servers([name], format="vscode", include_secrets=True)
    assert revealed["servers"][name]["env"] == {"K": "v"}


# ---- calls, health, logs, jobs, probes (the runtime) ---------------------------------------


async def test_call_a_tool_by_name_and_by_id(ops: Facade) -> None:
    await running(ops, "calculator")
    result = await ops.call_tool("calculator", "add", {"a": 2, "b": 3}, source="cli")
    assert (result.server_name, result.tool_name, result.is_error) == ("calculator", "add", False)
    assert result.structured_content == {"result": 5}
    add = await ops.get_tool("add", "calculator")
    by_id = await ops.call_tool(add.server_id, add.id, {"a": 1, "b": 1}, source="api")
    assert by_id.structured_content == {"result": 2}
    failed = await ops.call_tool("calculator", "divide", {"a": 1, "b": 0}, source="cli")
    assert failed.is_error and "division by zero" in str(failed.content)


async def test_call_refusals_raise_the_same_errors(ops: Facade) -> None:
    await running(ops, "calculator")
    with pytest.raises(NotFound):
        await ops.call_tool("calculator", "nope", {}, source="cli")
    with pytest.raises(NotFound):
        await ops.call_tool("ghost", "add", {}, source="cli")
    with pytest.raises(InvalidInput):
        await ops.call_tool("calculator", "add", {"a": "two"}, source="cli")
    await ops.set_tool_enabled("sqrt", False, actor="t", server_ref="calculator")
    try:
        with pytest.raises(Conflict) as caught:
            await ops.call_tool("calculator", "sqrt", {"x": 4}, source="cli")
        assert caught.value.field == "tool"
    finally:
        await ops.set_tool_enabled("sqrt", True, actor="t", server_ref="calculator")


async def test_health_runtime_info_and_logs(ops: Facade) -> None:
    await running(ops, "calculator")
    health = await ops.check_health("calculator")
    assert health.server_name == "calculator"
    assert health.is_running and health.is_responsive and health.tools_count >= 7
    info = await ops.runtime_info("calculator")
    assert info.status == "running" and info.pid
    assert isinstance(await ops.log_tail("calculator", 5), list)
    with pytest.raises(InvalidInput) as caught:
        await ops.log_tail("calculator", 0)
    assert caught.value.field == "lines"
    stopped = unique("idle")
    await ops.create_server(tiny(stopped, auto_start=False), actor="t")
    idle = await ops.check_health(stopped)
    assert not idle.is_running and not idle.is_responsive


async def test_scheduler_jobs_and_running_one(ops: Facade) -> None:
    jobs = {job.name: job for job in await ops.scheduler_jobs()}
    assert {"health", "capabilities", "cleanup"} <= set(jobs)
    ran = await ops.run_job("health")
    assert ran.name == "health" and ran.runs >= 1 and ran.last_ok is not None
    with pytest.raises(NotFound, match="no job"):
        await ops.run_job("nap")


async def test_probe_a_saved_server_and_a_definition(ops: Facade) -> None:
    name = unique("probe")
    await ops.create_server(tiny(name, auto_start=False), actor="t")
    saved = await ops.probe(name)
    assert saved.ok and [tool.name for tool in saved.tools] == ["ping"]
    unsaved = await ops.probe(tiny(unique("draft")))
    assert unsaved.ok
    with pytest.raises(InvalidInput) as caught:
        await ops.probe({"name": "draft"})
    assert caught.value.field == "command"


async def test_resources_and_prompts_of_a_server(ops: Facade) -> None:
    name = unique("lib")
    await ops.create_server(stdio_server_spec(name, "library"), actor="t")
    await ops.start_server(name, actor="t")
    resources = await ops.list_resources(name)
    assert [str(resource.uri) for resource in resources] == ["library://catalog"]
    read = await ops.read_resource(name, "library://catalog")
    assert "Dune" in str(read.contents[0])
    prompts = await ops.list_prompts(name)
    assert [prompt.name for prompt in prompts] == ["review"]
    rendered = await ops.get_prompt(name, "review", {"title": "Dune"})
    assert "Dune" in str(rendered.messages[0].content)
    gateway = {(tool.server_name, tool.name) for tool in await ops.list_gateway_tools()}
    assert {(name, "lookup"), ("calculator", "add")} <= gateway
    with pytest.raises(NotFound):
        await ops.list_prompts("ghost")
    await ops.stop_server(name, actor="t")


# ---- analytics -----------------------------------------------------------------------------


async def test_metrics_and_analytics_count_calls(ops: Facade) -> None:
    await running(ops, "calculator")
    before = await ops.tool_metrics("multiply", "calculator", "1h")
    for value in range(3):
        await ops.call_tool("calculator", "multiply", {"a": value, "b": 2}, source="api")
    await ops.call_tool("calculator", "divide", {"a": 1, "b": 0}, source="api")
    tool = await ops.tool_metrics("multiply", "calculator", "1h")
    assert tool.total_calls == before.total_calls + 3
    assert tool.p95_response_time_ms is not None
    server = await ops.server_metrics("calculator", "1h")
    assert server.server_name == "calculator" and server.total_calls >= 4
    assert server.total_errors >= 1 and 0 < (server.success_rate or 0) < 1
    fleet = await ops.analytics("24h")
    assert fleet.total_servers >= 1 and fleet.total_calls_today >= 4
    assert "calculator" in {metrics.server_name for metrics in fleet.server_metrics}
    series = await ops.time_series("calculator", "1h", buckets=12)
    assert len(series.points) == 12 and sum(point.calls for point in series.points) >= 4
    with pytest.raises(InvalidInput) as caught:
        await ops.analytics("2w")
    assert caught.value.field == "period"
    with pytest.raises(InvalidInput) as caught:
        await ops.time_series(buckets=0)
    assert caught.value.field == "buckets"
    with pytest.raises(NotFound):
        await ops.server_metrics("ghost")
    now = datetime.now(UTC)
    window = await ops.server_metrics("calculator", start=now - timedelta(hours=1), end=now)
    assert window.total_calls == server.total_calls
    with pytest.raises(InvalidInput) as caught:
        await ops.analytics(start=now, end=now - timedelta(hours=1))
    assert caught.value.field == "start"


async def test_a_failed_start_raises_the_same_error(ops: Facade) -> None:
    name = unique("broken")
    await ops.create_server(
        {"name": name, "command": "/nonexistent/tooldeck-test-server", "auto_start": False},
        actor="t",
    )
    with pytest.raises(NotRunning) as caught:
        await ops.start_server(name, actor="t")
    assert type(caught.value).__name__ == "StartFailed"
    assert "nonexistent" in caught.value.message

"""Nodes, placement and leases in-process: one node on SQLite, the lease SQL on a real
PostgreSQL, placement in the API and the CLI, and a node refusing another node's server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from textual.widgets import DataTable

from app.core.errors import Conflict, InvalidInput
from app.core.settings import ConfigError, Settings, load_settings
from app.ops.bootstrap import running_core
from app.ops.facade import LocalOperations
from app.runtime.lock import SupervisorLock
from app.tui.screens.nodes import NodesScreen
from storage import fleet as fleet_sql
from storage.db import Database
from storage.models import Node, ServerLease
from tests.cli_runner import one_line_error, tooldeck
from tests.conftest import stdio_server_spec
from tests.runtime_helpers import eventually, status_is
from tests.tui_helpers import make_app, palette_search, settle

REMOTE = {"name": "remote", "transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}


@pytest.fixture
def pg_url(new_pg_database: Callable[..., str]) -> str:
    return new_pg_database()


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url)
    yield database
    await database.dispose()


# ---- settings and placement in the faces ------------------------------------------------------


def test_a_node_name_is_checked(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLDECK_NODE", "any")
    with pytest.raises(ConfigError, match="TOOLDECK_NODE"):
        load_settings(data_dir)
    monkeypatch.setenv("TOOLDECK_NODE", "gpu-box.lan")
    assert load_settings(data_dir).node_name == "gpu-box.lan"
    monkeypatch.delenv("TOOLDECK_NODE")
    assert load_settings(data_dir).node_name  # the host name, made fit for a node name


async def test_placement_defaults_to_this_node_for_stdio_and_any_for_remote(
    ops: LocalOperations,
) -> None:
    local = await ops.create_server(stdio_server_spec("local", "tiny"), actor="t")
    remote = await ops.create_server(REMOTE, actor="t")
    assert local.placement == ops.settings.node_name
    assert remote.placement == "any"
    moved = await ops.update_server("local", {"placement": "any"}, actor="t")
    assert moved.placement == "any"
    with pytest.raises(InvalidInput, match="placement"):
        await ops.update_server("local", {"placement": "two words"}, actor="t")
    assert (await ops.get_server("local")).placement == "any"


def test_placement_on_the_command_line(data_dir: Path) -> None:
    added = tooldeck(
        "server", "add", "cli-made", "--command", "true", "--placement", "gpu", "--json"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["placement"] == "gpu"
    edited = tooldeck("server", "edit", "cli-made", "--placement", "any", "--json")
    assert json.loads(edited.stdout)["placement"] == "any"
    refused = tooldeck("server", "edit", "cli-made", "--placement", "not a node")
    assert "placement" in one_line_error(refused)


# ---- SQLite: one node -------------------------------------------------------------------------


async def test_sqlite_has_one_node_that_runs_every_server(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_SERVERS", "")
    settings = load_settings(data_dir)
    lock = SupervisorLock(settings.data_dir, "daemon")
    lock.acquire()
    try:
        await _one_node(settings)
    finally:
        lock.release()


async def _one_node(settings: Settings) -> None:
    async with running_core(settings) as ops:
        await ops.create_server(
            stdio_server_spec("elsewhere", "tiny", placement="other-node", auto_start=False),
            actor="t",
        )
        await ops.start_server("elsewhere", actor="t")
        assert await status_is(ops, "elsewhere", "running")
        # The fleet job beats on SQLite too: it keeps the one node's row fresh.
        await ops.run_job("fleet")
        nodes = await ops.list_nodes()
        assert [(n.name, n.alive, n.this_node) for n in nodes] == [(settings.node_name, True, True)]
        server = await ops.get_server("elsewhere")
        assert server.node == settings.node_name and server.unplaced_reason is None


# ---- PostgreSQL: the lease SQL ----------------------------------------------------------------


async def _floating(db: Database, settings: Settings, count: int) -> list[str]:
    ops = LocalOperations(db, settings)
    made = []
    for index in range(count):
        spec = stdio_server_spec(f"float-{index}", "tiny", placement="any")
        made.append((await ops.create_server(spec, actor="t")).id)
    return made


async def _join(db: Database, *names: str) -> None:
    for name in names:
        await fleet_sql.beat(
            db, name=name, advertise_url=None, version="t", started_at=datetime.now(UTC)
        )


async def test_leases_are_claimed_up_to_a_fair_share_and_taken_over_when_expired(
    pg_db: Database, settings: Settings
) -> None:
    servers = await _floating(pg_db, settings, 5)
    await _join(pg_db, "a", "b")
    first = await fleet_sql.renew_and_claim(pg_db, name="a", lease_s=30)
    second = await fleet_sql.renew_and_claim(pg_db, name="b", lease_s=30)
    assert (first.share, len(first.held), len(second.held)) == (3, 3, 2)
    assert first.held.isdisjoint(second.held) and first.held | second.held == set(servers)
    again = await fleet_sql.renew_and_claim(pg_db, name="a", lease_s=30)
    assert again.held == first.held and not again.claimed

    # a's leases expire (it stopped renewing): b takes them up to its share, a gets the rest.
    async with pg_db.session() as session:
        await session.execute(
            update(ServerLease)
            .where(ServerLease.node == "a")
            .values(expires_at=first.now - timedelta(seconds=1))
        )
    taken = await fleet_sql.renew_and_claim(pg_db, name="b", lease_s=30)
    assert len(taken.held) == 3 and len(taken.claimed) == 1
    back = await fleet_sql.renew_and_claim(pg_db, name="a", lease_s=30)
    assert len(back.held) == 2 and back.held.isdisjoint(taken.held)

    # A server no longer `any` is given up by its holder.
    ops = LocalOperations(pg_db, settings)
    pinned = next(iter(back.held))
    await ops.update_server(pinned, {"placement": "b"}, actor="t")
    after = await fleet_sql.renew_and_claim(pg_db, name="a", lease_s=30)
    assert pinned in after.released and pinned not in after.held


async def test_two_nodes_claiming_at_once_never_win_the_same_server(
    pg_url: str, pg_db: Database, settings: Settings
) -> None:
    servers = await _floating(pg_db, settings, 8)
    await _join(pg_db, "a", "b")
    other = Database(pg_url)
    try:
        rounds = await asyncio.gather(
            *(
                fleet_sql.renew_and_claim(db, name=name, lease_s=30)
                for db, name in ((pg_db, "a"), (other, "b"))
                for _ in range(3)
            )
        )
    finally:
        await other.dispose()
    a = frozenset().union(*(r.held for r in rounds[:3]))
    b = frozenset().union(*(r.held for r in rounds[3:]))
    assert a.isdisjoint(b)
    view = await fleet_sql.fleet_view(pg_db)
    assert set(view.leases) <= set(servers)
    assert len({node for node, _ in view.leases.values()}) <= 2


# ---- PostgreSQL: a node runs only its servers -------------------------------------------------


async def test_a_node_refuses_servers_placed_elsewhere(
    pg_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLDECK_DATABASE_URL", pg_url)
    monkeypatch.setenv("TOOLDECK_NODE", "here")
    monkeypatch.setenv("MCP_SERVERS", "")
    settings = load_settings(data_dir)
    lock = SupervisorLock(settings.data_dir, "daemon")
    lock.acquire()
    try:
        async with running_core(settings) as ops:
            await ops.create_server(
                stdio_server_spec("theirs", "tiny", placement="there"), actor="t"
            )
            await ops.create_server(stdio_server_spec("ours", "tiny"), actor="t")
            assert await eventually(lambda: status_is(ops, "ours", "running"))
            with pytest.raises(Conflict, match="placed on node there"):
                await ops.start_server("theirs", actor="t")
            with pytest.raises(Conflict, match="placed on node there"):
                await ops.stop_server("theirs", actor="t")
            theirs = await ops.get_server("theirs")
            assert theirs.status == "stopped" and theirs.node is None
            assert theirs.unplaced_reason == "node there has not joined the fleet"
            # An `any` server asked to start is claimed at once, not at the next heartbeat.
            spec = stdio_server_spec("floating", "tiny", placement="any", auto_start=False)
            await ops.create_server(spec, actor="t")
            await ops.start_server("floating", actor="t")
            floating = await ops.get_server("floating")
            assert (floating.status, floating.node) == ("running", "here")
            [node] = await ops.list_nodes()
            assert (node.name, node.alive, node.servers) == ("here", True, 2)
    finally:
        lock.release()


# ---- the dashboard's nodes screen -------------------------------------------------------------


async def test_the_nodes_screen_lists_the_fleet(
    pg_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLDECK_DATABASE_URL", pg_url)
    monkeypatch.setenv("TOOLDECK_NODE", "here")
    settings = load_settings(data_dir)
    db = Database(pg_url)
    try:
        ops = LocalOperations(db, settings)
        await ops.create_server(stdio_server_spec("local", "tiny"), actor="t")
        await _join(db, "here", "gpu")
        # gpu's last heartbeat is a minute old: it is down.
        async with db.session() as session:
            await session.execute(
                update(Node)
                .where(Node.name == "gpu")
                .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=1))
            )
        app = make_app(settings, ops)
        async with app.run_test(size=(120, 30)) as pilot:
            await settle(pilot)
            await pilot.press("ctrl+p")
            await settle(pilot)
            assert await palette_search(pilot, "nodes") == "Nodes"
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, NodesScreen)
            table = app.screen.query_one("#nodes-table", DataTable)
            rows = [table.get_row(row.key) for row in table.ordered_rows]
            shown = [[str(cell) for cell in row[:3]] for row in rows]
            assert shown == [["gpu", "down", "0"], ["here *", "alive", "1"]]
    finally:
        await db.dispose()

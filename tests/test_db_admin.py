"""`tooldeck db check`, `tooldeck status`'s database line and `tooldeck db copy` between SQLite
and a real PostgreSQL server, through the real command line."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import JSON, Text, cast, select

from app.core.settings import Settings, load_settings
from app.ops.bootstrap import open_database
from app.ops.facade import LocalOperations
from app.runtime.lock import SupervisorLock
from storage.analytics import UsageAnalytics
from storage.db import Database, head_revision, sqlite_url
from storage.models import Base
from storage.windows import make_window
from tests.cli_runner import one_line_error, tooldeck
from tests.daemon_helpers import daemon_env, start_daemon, wait_for
from tests.demo_data import DEMO_NOW, build_demo

SERVERS = "/api/v1/toolservers/servers"
# A few days of the demo's usage: enough rows for every table, quick to build.
DEMO_DAYS = 3


async def table_contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in primary-key order, JSON as stored text."""
    db = Database(url)
    try:
        contents = {}
        async with db.read() as session:
            for table in Base.metadata.sorted_tables:
                columns = [
                    cast(column, Text) if isinstance(column.type, JSON) else column
                    for column in table.columns
                ]
                rows = await session.execute(select(*columns).order_by(*table.primary_key.columns))
                contents[table.name] = [tuple(row) for row in rows]
        return contents
    finally:
        await db.dispose()


async def facade_on(url: str, home: Path) -> tuple[LocalOperations, Database]:
    settings = load_settings(home).model_copy(update={"database_url": url})
    db = await open_database(settings)
    return LocalOperations(db, settings), db


async def test_copy_round_trips_the_demo_data_set_through_postgresql(
    ops: LocalOperations, settings: Settings, tmp_path: Path, new_pg_database: Callable[..., str]
) -> None:
    await ops.seed_builtin_servers()
    fleet = await build_demo(ops, usage_days=DEMO_DAYS)
    assert fleet.usage_rows > 1000
    original = settings.effective_database_url
    postgres = new_pg_database(migrated=False)  # the copy creates the schema

    copied = tooldeck("db", "copy", "--to", postgres)
    assert copied.returncode == 0, copied.stderr
    assert "every count matches" in copied.stdout
    assert "tool_usage" in copied.stderr  # the per-table progress

    back_home = tmp_path / "back"
    back = tooldeck("--data-dir", str(back_home), "db", "copy", "--from", postgres)
    assert back.returncode == 0, back.stderr
    round_trip = sqlite_url(back_home / "tooldeck.db")

    before = await table_contents(original)
    assert before["tool_usage"] and before["usage_scope_hourly"] and before["server_events"]
    assert await table_contents(round_trip) == before

    # The same figures from every copy, at the demo's instant: exact counts and percentiles.
    expected = await figures(ops.db)
    assert expected[0]["total_calls_today"] > 0 and expected[1]["p95_response_time_ms"]
    for url, home in ((postgres, tmp_path / "pg"), (round_trip, back_home)):
        other, db = await facade_on(url, home)
        try:
            assert await figures(db) == expected
            # Ids go on after the copied ones: new rows do not clash with them.
            server = await other.create_server({"name": "after-copy", "command": "x"}, actor="t")
            assert (await other.list_events(server.id))[0].id > max_event_id(before)
        finally:
            await db.dispose()


async def figures(db: Database) -> list[dict[str, Any]]:
    analytics = UsageAnalytics(
        db,
        clock=lambda: DEMO_NOW,
        raw_retention_days=90,
        failing_error_rate=0.2,
        failing_min_calls=5,
    )
    return [
        (await analytics.system(make_window(period, now=DEMO_NOW))).model_dump()
        for period in ("24h", "7d")
    ]


def max_event_id(contents: dict[str, list[tuple[Any, ...]]]) -> int:
    return max(row[0] for row in contents["server_events"])


async def test_copy_refuses_a_non_empty_target_unless_forced(
    ops: LocalOperations, new_pg_database: Callable[..., str]
) -> None:
    await ops.create_server({"name": "alpha", "command": "x"}, actor="test")
    target = new_pg_database()
    assert tooldeck("db", "copy", "--to", target).returncode == 0

    refused = one_line_error(tooldeck("db", "copy", "--to", target))
    assert "already holds" in refused and "--force" in refused

    await ops.create_server({"name": "beta", "command": "x"}, actor="test")
    forced = tooldeck("db", "copy", "--to", target, "--force")
    assert forced.returncode == 0, forced.stderr
    names = [row[1] for row in (await table_contents(target))["tool_servers"]]
    assert sorted(names) == ["alpha", "beta"]


async def test_copy_refuses_while_a_supervisor_writes_to_the_data_dir(
    ops: LocalOperations, settings: Settings, new_pg_database: Callable[..., str]
) -> None:
    await ops.create_server({"name": "alpha", "command": "x"}, actor="test")
    target = new_pg_database()
    lock = SupervisorLock(settings.data_dir, "daemon")
    lock.acquire()
    try:
        refused = one_line_error(tooldeck("db", "copy", "--to", target))
    finally:
        lock.release()
    assert f"a daemon (pid {os.getpid()})" in refused and "stop it first" in refused
    assert (await table_contents(target))["tool_servers"] == []


def test_copy_refuses_bad_urls_in_one_line() -> None:
    assert "no database driver" in one_line_error(tooldeck("db", "copy", "--to", "nope://x/y"))
    here = tooldeck("config", "--json")
    url = next(row["value"] for row in json.loads(here.stdout) if "DATABASE_URL" in row["name"])
    assert "the same database" in one_line_error(tooldeck("db", "copy", "--to", url))


@pytest.mark.both_backends
async def test_check_reports_the_revision_and_what_is_stored(
    ops: LocalOperations, backend: str
) -> None:
    await ops.create_server({"name": "alpha", "command": "x"}, actor="test")
    result = tooldeck("db", "check")
    assert result.returncode == 0, result.stderr
    assert f"{head_revision()} (up to date)" in result.stdout
    assert "1 servers, 0 tools, 0 calls metered" in result.stdout
    report = json.loads(tooldeck("db", "check", "--json").stdout)
    assert report["up_to_date"] and report["stored"]["backend"] == backend
    assert report["stored"]["servers"] == 1

    status = tooldeck("status")
    assert f"{head_revision()} (up to date)" in status.stdout
    assert "1 servers" in status.stdout


def test_check_of_an_unreachable_server_says_why_and_fails() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+asyncpg://tooldeck:secret@127.0.0.1:{port}/tooldeck"
    result = tooldeck("db", "check", env={"TOOLDECK_DATABASE_URL": url})
    assert result.returncode == 1
    assert "error" in result.stdout and "secret" not in result.stdout + result.stderr
    assert "tooldeck:********@127.0.0.1" in result.stdout


async def test_a_daemon_on_postgresql_meters_a_gateway_call_shown_by_analytics(
    tmp_path: Path, new_pg_database: Callable[..., str]
) -> None:
    home = tmp_path / "pg-home"
    env = {"TOOLDECK_DATABASE_URL": new_pg_database()}
    daemon = start_daemon(home, env=daemon_env(home, **env))
    try:
        with daemon.client() as http:
            wait_for(lambda: http.get(f"{SERVERS}/calculator").json()["status"] == "running")
        headers = {"Authorization": f"Bearer {daemon.token}"}
        async with (
            httpx2.AsyncClient(headers=headers, trust_env=False, timeout=30) as client,
            streamable_http_client(f"{daemon.url}/mcp", http_client=client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool("calculator__add", {"a": 20, "b": 22})
            assert result.structured_content == {"result": 42}

        def metered() -> dict[str, Any] | None:
            shown = tooldeck("--data-dir", str(home), "analytics", "--json", env=env)
            assert shown.returncode == 0, shown.stderr
            view = json.loads(shown.stdout)
            return view if view["total_calls_today"] == 1 else None

        view = wait_for(metered)
        [tool] = view["top_tools"]
        assert (tool["tool_name"], tool["total_calls"]) == ("add", 1)
        assert "postgresql" in tooldeck("--data-dir", str(home), "db", "check", env=env).stdout
    finally:
        assert daemon.stop() == 0

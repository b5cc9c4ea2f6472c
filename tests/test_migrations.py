"""Schema migrations: from an empty database (SQLite and PostgreSQL), and from earlier revisions
with data in them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import Database, head_revision, sqlite_url
from storage.models import Base

FIRST_REVISION = "0001"


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database with no tables yet: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        return sqlite_url(tmp_path / "empty.db")
    new_pg_database: Callable[..., str] = request.getfixturevalue("new_pg_database")
    return new_pg_database(migrated=False)


async def insert_server(conn: AsyncConnection, name: str, *, builtin: bool) -> None:
    """A server row as every revision's schema takes it (id 's1')."""
    await conn.execute(
        text(
            "INSERT INTO tool_servers (id, name, transport, command, args, env, headers,"
            " enabled, auto_start, auto_update, max_failures, startup_timeout_s,"
            " call_timeout_s, is_builtin, status, consecutive_failures, created_at,"
            " updated_at) VALUES ('s1', :name, 'stdio', 'x', '[]', '{}', '{}', true, true, true,"
            " 3, 30, 60, :builtin, 'stopped', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        ),
        {"name": name, "builtin": builtin},
    )


@pytest.mark.both_backends
async def test_upgrade_from_empty_creates_every_table(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        assert await db.current_revision() is None
        await db.upgrade()
        assert await db.current_revision() == head_revision()
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert set(Base.metadata.tables) <= tables
    finally:
        await db.dispose()


async def test_upgrade_from_first_revision_keeps_rows(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "old.db"))
    try:
        await db.upgrade(FIRST_REVISION)
        async with db.engine.begin() as conn:
            await insert_server(conn, "old", builtin=False)
            await conn.execute(
                text(
                    "INSERT INTO tool_usage (server_id, tool_name, called_at, success)"
                    " VALUES ('s1', 't', '2026-01-01 00:00:00', 1)"
                )
            )
        await db.upgrade()
        assert await db.current_revision() == head_revision()
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT name FROM tool_servers"))).scalar() == "old"
            assert (await conn.execute(text("SELECT count(*) FROM tool_usage"))).scalar() == 1
    finally:
        await db.dispose()


@pytest.mark.both_backends
async def test_upgrade_is_idempotent(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        await db.upgrade()
        await db.upgrade()
        assert await db.current_revision() == head_revision()
    finally:
        await db.dispose()


@pytest.mark.both_backends
async def test_every_revision_downgrades_to_nothing_and_upgrades_again(
    empty_database_url: str,
) -> None:
    db = Database(empty_database_url)
    try:
        await db.upgrade()
        await db.downgrade("base")
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert not set(Base.metadata.tables) & tables
        await db.upgrade()
        assert await db.current_revision() == head_revision()
    finally:
        await db.dispose()


@pytest.mark.both_backends
async def test_call_outcomes_and_the_seeding_flag_from_revision_0005(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Failed calls recorded before outcomes existed become errors, the rest ok; a database
    with built-in servers was seeded by the version that made it."""
    db = Database(empty_database_url)
    try:
        await db.upgrade("0005")
        async with db.engine.begin() as conn:
            await insert_server(conn, "calculator", builtin=True)
            for success in ("true", "false", "true"):
                await conn.execute(
                    text(
                        "INSERT INTO tool_usage (server_id, tool_name, called_at, success)"
                        f" VALUES ('s1', 't', '2026-01-01 00:00:00', {success})"
                    )
                )
        await db.upgrade()
        async with db.engine.connect() as conn:
            outcomes = (
                await conn.execute(text("SELECT outcome FROM tool_usage ORDER BY id"))
            ).scalars()
            assert list(outcomes) == ["ok", "error", "ok"]
            flag = (await conn.execute(text("SELECT key FROM deck_state"))).scalars().all()
            assert flag == ["builtins_seeded"]
    finally:
        await db.dispose()

    fresh = Database(sqlite_url(tmp_path / "fresh.db"))
    try:
        await fresh.upgrade()
        async with fresh.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM deck_state"))).scalar() == 0
    finally:
        await fresh.dispose()


@pytest.mark.both_backends
async def test_tool_annotations_from_revision_0013_take_the_protocol_s_spelling(
    empty_database_url: str,
) -> None:
    """Rows kept before 0013's release spelled annotations as Python does; a client reads only
    the protocol's spelling, so they are rewritten once, and rows already right are left."""
    db = Database(empty_database_url)
    try:
        await db.upgrade("0013_fleet_secret")
        async with db.engine.begin() as conn:
            await insert_server(conn, "old", builtin=False)
            for tool_id, annotations in (
                ("t1", '{"read_only_hint": true, "open_world_hint": false, "title": "T"}'),
                ("t2", '{"destructiveHint": true}'),
                ("t3", None),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO server_tools (id, server_id, name, annotations, enabled,"
                        " is_available, bypass_when_unavailable, total_calls, total_errors,"
                        " discovered_at, updated_at) VALUES (:id, 's1', :id, :annotations,"
                        " true, false, false, 0, 0, '2026-01-01 00:00:00',"
                        " '2026-01-01 00:00:00')"
                    ),
                    {"id": tool_id, "annotations": annotations},
                )
        await db.upgrade()
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id, annotations, listing_rest FROM server_tools ORDER BY id")
            )
            found = {tool_id: (_json(kept), rest) for tool_id, kept, rest in rows}
        assert found == {
            "t1": ({"readOnlyHint": True, "openWorldHint": False, "title": "T"}, None),
            "t2": ({"destructiveHint": True}, None),
            "t3": (None, None),
        }
    finally:
        await db.dispose()


def _json(value: object) -> object:
    # SQLite hands a JSON column back as text when read without the ORM's types.
    return json.loads(value) if isinstance(value, str) else value

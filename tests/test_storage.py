"""Storage round trips on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from storage.db import SQLITE_BUSY_TIMEOUT_MS, Database
from storage.models import ServerEvent, ServerTool, ToolServer, ToolUsage

pytestmark = pytest.mark.both_backends


async def test_server_round_trip_keeps_json_and_aware_datetimes(db: Database) -> None:
    checked = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with db.session() as session:
        session.add(
            ToolServer(
                name="files",
                command="npx",
                args=["-y", "pkg"],
                env={"KEY": "v"},
                headers={"X-A": "b"},
                last_health_check=checked,
            )
        )
    async with db.session() as session:
        row = (await session.execute(select(ToolServer))).scalar_one()
        assert row.args == ["-y", "pkg"]
        assert row.env == {"KEY": "v"}
        assert row.headers == {"X-A": "b"}
        assert row.last_health_check == checked
        assert row.last_health_check.tzinfo is not None
        assert row.status == "stopped"
        assert row.max_failures == 3
        assert len(row.id) == 36


async def test_deleting_a_server_cascades_to_its_tools(db: Database) -> None:
    async with db.session() as session:
        server = ToolServer(name="s", command="x")
        session.add(server)
        await session.flush()
        session.add(ServerTool(server_id=server.id, name="t"))
        server_id = server.id
    async with db.session() as session:
        await session.execute(text("DELETE FROM tool_servers WHERE id = :id"), {"id": server_id})
    async with db.session() as session:
        assert (await session.execute(select(ServerTool))).first() is None


async def test_tool_names_are_unique_per_server(db: Database) -> None:
    async with db.session() as session:
        server = ToolServer(name="s", command="x")
        session.add(server)
        await session.flush()
        server_id = server.id
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            session.add_all(
                [
                    ServerTool(server_id=server_id, name="t"),
                    ServerTool(server_id=server_id, name="t"),
                ]
            )


async def test_usage_and_events_outlive_nothing_they_reference(db: Database) -> None:
    """Usage and events have no foreign keys: history stays when a server is deleted."""
    async with db.session() as session:
        session.add(ToolUsage(server_id="gone", tool_name="t", success=True, response_time_ms=1.5))
        session.add(ServerEvent(server_id="gone", kind="deleted", message="deleted s"))
    async with db.session() as session:
        usage = (await session.execute(select(ToolUsage))).scalar_one()
        assert usage.called_at.tzinfo is not None
        assert (await session.execute(select(ServerEvent))).scalar_one().kind == "deleted"


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(db: Database, backend: str) -> None:
    if backend != "sqlite":
        return
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() > 0


async def test_a_read_does_not_wait_for_a_writer_holding_the_lock(db: Database) -> None:
    """Reads see the last commit while a write transaction is open, instead of queueing on
    the busy timeout (5 s) behind it."""
    async with db.session() as writer:
        writer.add(ToolServer(name="pending", command="x"))
        await writer.flush()
        async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 2000), db.read() as reader:
            count = (await reader.execute(select(func.count(ToolServer.id)))).scalar_one()
        assert count == 0  # the writer's row is not committed yet
    async with db.read() as reader:
        assert (await reader.execute(select(func.count(ToolServer.id)))).scalar_one() == 1

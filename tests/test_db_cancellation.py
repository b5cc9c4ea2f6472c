"""The database under cancellation and load: no cancelled task waits out the busy timeout, no
write lock outlives the task that took it, and writers of one process never time out on each
other."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.util import await_

import storage.db
from app.core.settings import Settings
from app.core.usage_record import UsageRecord
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from storage.db import Database, sqlite_url
from storage.models import ServerEvent, ToolServer, ToolUsage
from tests.test_usage import START, make_tools, usage


async def _migrated(tmp_path: Path) -> Database:
    db = Database(sqlite_url(tmp_path / "t.db"))
    await db.upgrade()
    return db


def _lock_is_free(path: Path) -> bool:
    """Whether another connection could take the write lock right now, without waiting."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


async def test_a_write_cancelled_in_the_middle_of_a_query_leaves_no_lock(tmp_path: Path) -> None:
    """The cause of the intermittent "database is locked": a task cancelled between a query's
    first row and its fetch left its connection closed as a zombie that kept the transaction,
    and so the write lock, until a garbage collection."""
    db = await _migrated(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def gate(value: Any) -> Any:
        entered.set()
        release.wait(30)
        return value

    @event.listens_for(db.engine.sync_engine, "connect")
    def add_gate(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("gate", 1, gate)

    await db.engine.dispose()  # connections opened by the upgrade have no gate
    async with db.session() as session:
        for index in range(3):
            session.add(ToolServer(name=f"s{index}", command="x"))

    async def scan() -> None:
        async with db.session() as session:
            session.add(ServerEvent(server_id=None, kind="job", message="scan"))
            await session.flush()
            await session.execute(text("SELECT gate(name) FROM tool_servers"))

    task = asyncio.create_task(scan())
    await asyncio.to_thread(entered.wait, 30)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    held = task  # the task, its exception and its traceback stay referenced, as in a log record
    assert _lock_is_free(tmp_path / "t.db")
    async with db.read() as session:
        assert await session.scalar(select(func.count(ServerEvent.id))) == 0
    del held
    await db.dispose()


async def test_a_task_cancelled_while_another_process_writes_stops_waiting_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write waiting for a lock held elsewhere polls it from asyncio: cancelled, it ends while
    the lock is still held, even with a busy timeout of an hour (it used to wait it out)."""
    monkeypatch.setattr(storage.db, "SQLITE_BUSY_TIMEOUT_MS", 3_600_000)
    db = await _migrated(tmp_path)
    refused = asyncio.Event()

    @event.listens_for(db.engine.sync_engine, "handle_error")
    def on_error(context: Any) -> None:
        if storage.db.is_busy(context.original_exception):
            refused.set()

    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:

        async def write() -> None:
            async with db.session() as session:
                session.add(ToolServer(name="late", command="x"))

        task = asyncio.create_task(write())
        await refused.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert holder.in_transaction  # still held: the task did not wait for it
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    async with db.session() as session:  # and the next writer goes through
        session.add(ToolServer(name="next", command="x"))
    await db.dispose()


async def test_a_lock_held_elsewhere_is_waited_for_then_written(tmp_path: Path) -> None:
    db = await _migrated(tmp_path)
    refused = asyncio.Event()

    @event.listens_for(db.engine.sync_engine, "handle_error")
    def on_error(context: Any) -> None:
        if storage.db.is_busy(context.original_exception):
            refused.set()

    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with db.session() as session:
            session.add(ToolServer(name="patient", command="x"))

    task = asyncio.create_task(write())
    await refused.wait()
    holder.execute("ROLLBACK")
    holder.close()
    await task
    async with db.read() as session:
        assert await session.scalar(select(ToolServer.name)) == "patient"
    await db.dispose()


async def test_many_writers_of_one_process_wait_their_turn(db: Database) -> None:
    """A hundred concurrent writers, each reading then writing: none sees "database is locked",
    because they queue in asyncio and not in SQLite's busy handler."""

    async def writer(index: int) -> None:
        async with db.session() as session:
            count = await session.scalar(select(func.count(ToolServer.id)))
            session.add(ToolServer(name=f"w{index}", command="x", description=str(count)))

    await asyncio.gather(*(writer(index) for index in range(100)))
    async with db.read() as session:
        descriptions = (await session.execute(select(ToolServer.description))).scalars().all()
    # Each writer saw every commit before its own: the transactions ran one after another.
    assert sorted(int(value or 0) for value in descriptions) == list(range(100))


async def test_a_write_inside_a_write_of_the_same_task_is_refused(db: Database) -> None:
    """It would wait for itself forever; it fails at once, naming why."""
    async with db.session():
        with pytest.raises(RuntimeError, match="wait for itself"):
            async with db.session():
                pass


async def test_a_read_cancelled_while_it_returns_its_connection_returns_it_cleanly(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A shutdown cancels everything, sometimes twice: a cancellation landing in the rollback
    that returns a read's connection to its pool made SQLAlchemy log "Exception during reset"
    (a CancelledError) and drop the connection."""
    inside, resetting, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @event.listens_for(db.read_engine.sync_engine.pool, "reset")
    def slow_reset(_dbapi_connection: Any, _record: Any, _state: Any) -> None:
        resetting.set()
        await_(release.wait())  # inside the pool's reset, in SQLAlchemy's greenlet

    async def read() -> None:
        async with db.read() as session:
            await session.execute(select(1))
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(read())
    await inside.wait()
    task.cancel()
    await resetting.wait()
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "Exception during reset" not in caplog.text
    assert db.read_engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_flush_cancelled_before_it_writes_puts_its_batch_back(
    ops: LocalOperations, settings: Settings
) -> None:
    """Cancelled while it waits for its turn to write (a request whose client went away): the
    batch it took goes back to the front of the queue and is written by the next flush."""
    tools = await make_tools(ops, 1)
    recorder = UsageRecorder(ops.db, settings)
    for call in range(30):
        recorder.record(usage(tools[0], START + timedelta(seconds=call), 2.0))
    async with ops.db.write_turn():  # another writer of this process holds the turn
        flushing = asyncio.create_task(recorder.flush())
        await asyncio.sleep(0)  # one step: it takes its batch and waits for the turn
        assert recorder.stats().queued == 0
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
    assert recorder.stats().queued == 30
    await recorder.flush()
    stats = recorder.stats()
    assert (stats.written, stats.dropped, stats.queued) == (30, 0, 0)
    async with ops.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(ToolUsage)) == 30
    await recorder.stop()


async def test_a_flush_cancelled_while_it_writes_counts_what_it_wrote_once(
    ops: LocalOperations, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its transaction runs on the writer thread: the transaction finishes
    (and holds the write turn until it has), the batch is counted as written, nothing twice."""
    tools = await make_tools(ops, 1)
    recorder = UsageRecorder(ops.db, settings)
    writing, release = threading.Event(), threading.Event()
    original = recorder._write_batch

    def gated(batch: list[UsageRecord], drops: int) -> None:
        writing.set()
        release.wait(30)
        original(batch, drops)

    monkeypatch.setattr(recorder, "_write_batch", gated)
    for call in range(30):
        recorder.record(usage(tools[0], START + timedelta(seconds=call), 2.0))
    flushing = asyncio.create_task(recorder.flush())
    await asyncio.to_thread(writing.wait, 30)
    flushing.cancel()
    turn = asyncio.create_task(_take_turn(ops.db))
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await turn
    stats = recorder.stats()
    assert (stats.written, stats.dropped, stats.queued) == (30, 0, 0)
    async with ops.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(ToolUsage)) == 30
    await recorder.stop()


async def _take_turn(db: Database) -> None:
    async with db.write_turn():
        pass

"""The database engine: one async engine per data dir, migrated at start-up.

SQLite takes one writer at a time. In this process writers take their turn in asyncio
(`write_turn`), where a waiting task can be cancelled at once; SQLite's own busy handler, which
cannot be interrupted, is left only the short wait for a lock held by another process, and even
that is polled from asyncio (`session`). Commit, rollback and close are carried to their end
when the task is cancelled meanwhile, and a connection closed inside a transaction rolls it back
first: no write lock outlives the task that took it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# How long a write waits for a lock another process holds before it fails with "database is
# locked". Writers of this process never wait for each other here: see `write_turn`.
SQLITE_BUSY_TIMEOUT_MS = 5000
# SQLite's busy handler of a write connection waits no longer than this at a time; the rest of
# the wait is polled from asyncio, where a cancelled task stops waiting at once.
WRITE_BUSY_POLL_MS = 50
BEGIN_RETRY_FIRST_S = 0.01
BEGIN_RETRY_MAX_S = 0.25
SQLITE_BUSY = 5


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class RollingBackConnection(sqlite3.Connection):
    """An SQLite connection that rolls back an open transaction before it closes.

    Python's `close()` leaves a connection whose cursor still holds an unfinished statement open
    as a "zombie" (sqlite3_close_v2), transaction and write lock included, until that cursor is
    garbage collected. A task cancelled between a query's first row and its fetch leaves exactly
    that behind when SQLAlchemy closes the connection, and every other writer then waited out
    the busy timeout.
    """

    def close(self) -> None:
        with suppress(sqlite3.Error):
            if self.in_transaction:
                self.rollback()
        super().close()


def _pragmas(busy_timeout_ms: int) -> Any:
    def set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions: see _begin_immediate.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the dashboard read while the usage writer writes; NORMAL sync is safe under
        # WAL.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    return set_sqlite_pragmas


def _connect_args(busy_timeout_ms: int) -> dict[str, Any]:
    return {"timeout": busy_timeout_ms / 1000, "factory": RollingBackConnection}


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock when a transaction starts, not at its first write.

    A deferred transaction that reads and then writes cannot upgrade its lock while another
    writer holds it, and SQLite answers "database is locked" at once instead of waiting: with
    the lock taken up front, a writer waits for its turn before it has read anything.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_deferred(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def is_busy(exc: BaseException) -> bool:
    """Whether SQLite refused for a lock someone else holds ("database is locked")."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == SQLITE_BUSY
    return "database is locked" in str(orig)


async def carried_through(work: Awaitable[T]) -> T:
    """Await `work` to its end even if this task is cancelled meanwhile, then let the
    cancellation through.

    For commit, rollback and close: cut short, they leave a transaction (and its lock) open or a
    connection half returned to its pool. Each takes milliseconds once the write lock is held.
    """
    inner = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(inner)
            break
        except asyncio.CancelledError:
            if inner.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


@dataclass(eq=False)
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holder: asyncio.Task[Any] | None = None


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


class Database:
    """Owns the engines and the session factories."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = _connect_args(WRITE_BUSY_POLL_MS)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _pragmas(WRITE_BUSY_POLL_MS))
            event.listen(self.engine.sync_engine, "begin", _begin_immediate)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads take no write lock: in WAL mode a deferred read transaction sees a consistent
        # snapshot and never waits for the writer, so the dashboard is not held up by a
        # usage flush. A second pool keeps the two kinds of transaction apart.
        self.read_engine: AsyncEngine = self.engine
        if self.is_sqlite:
            read_args = {"connect_args": _connect_args(SQLITE_BUSY_TIMEOUT_MS)}
            self.read_engine = create_async_engine(url, **read_args)
            event.listen(self.read_engine.sync_engine, "connect", _pragmas(SQLITE_BUSY_TIMEOUT_MS))
            event.listen(self.read_engine.sync_engine, "begin", _begin_deferred)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # One turn per event loop: the dashboard's reader thread runs a loop of its own.
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turn] = (
            weakref.WeakKeyDictionary()
        )

    @asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        """This process's turn to write: one writer at a time, waiting here, cancellably.

        Every write of this process takes it: the sessions of `session()` and the usage writer's
        thread. A write inside another one in the same task would wait for itself: refused.
        """
        if not self.is_sqlite:
            yield
            return
        turn = self._turns.setdefault(asyncio.get_running_loop(), _Turn())
        task = asyncio.current_task()
        if task is not None and turn.holder is task:
            raise RuntimeError("a write transaction inside another one would wait for itself")
        async with turn.lock:
            turn.holder = task
            try:
                yield
            finally:
                turn.holder = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction: committed on success, rolled back on error."""
        async with self.write_turn():
            session = await self._begin_writing()
            try:
                try:
                    yield session
                except BaseException:
                    await carried_through(session.rollback())
                    raise
                await carried_through(session.commit())
            finally:
                await carried_through(session.close())

    async def _begin_writing(self) -> AsyncSession:
        """A session whose transaction holds the write lock (BEGIN IMMEDIATE has run).

        A lock held by another process is waited for here, polling, up to the busy timeout.
        """
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        delay = BEGIN_RETRY_FIRST_S
        while True:
            session = self.sessions()
            try:
                await session.connection()
                return session
            except OperationalError as exc:
                await carried_through(session.close())
                if not is_busy(exc) or time.monotonic() + delay > deadline:
                    raise
            except BaseException:
                await carried_through(session.close())
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, BEGIN_RETRY_MAX_S)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only: one consistent snapshot, no write lock."""
        session = self.read_sessions()
        try:
            yield session
        finally:
            # Returning the connection rolls the read transaction back: cut short by a
            # cancellation, the pool would log "Exception during reset" and drop it.
            await carried_through(session.close())

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for reading only, in one snapshot (see `read`)."""
        conn = await self.read_engine.connect()
        try:
            await conn.begin()
            yield conn
        finally:
            await carried_through(conn.close())

    async def upgrade(self, revision: str = "head") -> None:
        async with self.session() as session:
            conn = await session.connection()
            await conn.run_sync(_run_alembic, "upgrade", revision)

    async def current_revision(self) -> str | None:
        async with self.read_engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    def create_sync_engine(self) -> Engine:
        """A synchronous engine on the same database, with the same pragmas.

        For work that runs on a worker thread (the usage writer), so that its CPU time never
        stalls the event loop. Its writes take `write_turn` on the loop around each transaction.
        The caller disposes of it.
        """
        url = make_url(self.url)
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = _connect_args(WRITE_BUSY_POLL_MS)
        engine = create_engine(url.set(drivername=url.get_backend_name()), **kwargs)
        if self.is_sqlite:
            event.listen(engine, "connect", _pragmas(WRITE_BUSY_POLL_MS))
            event.listen(engine, "begin", _begin_immediate)
        return engine


def _run_alembic(connection: Connection, verb: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, verb)(config, revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head

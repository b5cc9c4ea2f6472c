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
import functools
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.settings import Settings

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


def is_transient(exc: BaseException) -> bool:
    """Whether a failed write may succeed if tried again: the database was locked, busy, out of
    disk, or unreachable (PostgreSQL restarting, a network break). Not a statement it refuses."""
    if isinstance(exc, OperationalError | OSError):
        return True
    # asyncpg's lost connections reach SQLAlchemy as other DBAPI errors, flagged invalidated.
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


class Database:
    """Owns the engines and the session factories."""

    @classmethod
    def of(cls, settings: Settings) -> Database:
        """The database the settings name, with their pool sizes."""
        return cls(
            settings.effective_database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )

    def __init__(self, url: str, *, pool_size: int = 5, max_overflow: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = _connect_args(WRITE_BUSY_POLL_MS)
        else:
            # A server restart or a failover closes pooled connections: test each one as it is
            # taken, so the first query after it does not fail.
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
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

    async def downgrade(self, revision: str) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_alembic, "downgrade", revision)

    async def current_revision(self) -> str | None:
        async with self.read_engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    def create_thread_writer(self, *sqlite_pragmas: str) -> ThreadWriter:
        """A synchronous writer on the same database, for one worker thread.

        For work whose CPU time must never stall the event loop (the usage writer): the thread
        runs synchronous code in a transaction with `ThreadWriter.transaction`; on SQLite its
        writes take `write_turn` on the loop around each transaction. `sqlite_pragmas` are run
        on each new SQLite connection after the usual ones. The caller disposes of it, on the
        same thread.
        """
        if self.is_sqlite:
            return _SqliteThreadWriter(self.url, sqlite_pragmas)
        return _LoopThreadWriter(self.url)


class ThreadWriter(Protocol):
    def transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a connection in one transaction: committed, or rolled back if it
        raises."""
        ...

    def dispose(self) -> None: ...


class _SqliteThreadWriter:
    def __init__(self, url: str, pragmas: Sequence[str]) -> None:
        parsed = make_url(url)
        self.engine = create_engine(
            parsed.set(drivername=parsed.get_backend_name()),
            connect_args=_connect_args(WRITE_BUSY_POLL_MS),
        )
        event.listen(self.engine, "connect", _pragmas(WRITE_BUSY_POLL_MS))
        event.listen(self.engine, "begin", _begin_immediate)
        if pragmas:
            event.listen(self.engine, "connect", functools.partial(_run_pragmas, pragmas))

    def transaction(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    def dispose(self) -> None:
        self.engine.dispose()


class _LoopThreadWriter:
    """An async driver (asyncpg) from a worker thread: the thread runs its own event loop, and
    the synchronous work runs in SQLAlchemy's greenlet bridge, as `AsyncConnection.run_sync`."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        # One thread, one connection at a time.
        self._engine = create_async_engine(url, pool_size=1, max_overflow=0)

    def transaction(self, work: Callable[[Connection], T]) -> T:
        async def run() -> T:
            async with self._engine.begin() as conn:
                return await conn.run_sync(work)

        return self._loop.run_until_complete(run())

    def dispose(self) -> None:
        try:
            self._loop.run_until_complete(self._engine.dispose())
        finally:
            self._loop.close()


def _run_pragmas(pragmas: Sequence[str], dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in pragmas:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _run_alembic(connection: Connection, verb: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, verb)(config, revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head

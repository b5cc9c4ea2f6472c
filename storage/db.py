"""The database engine: one async engine per data dir, migrated at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Generous: a write that waits is better than one that is lost. Under heavy load a write lock
# has been seen held past 5 s, probably by the connection of a task cancelled mid-transaction
# until it was released; waiting longer turns that into a delay.
SQLITE_BUSY_TIMEOUT_MS = 15000


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, open transactions: see _begin_immediate.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while the usage writer writes; NORMAL sync is safe under WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock when a transaction starts, not at its first write.

    A deferred transaction that reads and then writes cannot upgrade its lock while another
    writer holds it, and SQLite answers "database is locked" at once instead of waiting: with
    the lock taken up front, concurrent writers (supervisor, usage writer, facade) queue on the
    busy timeout. Transactions here are short, so the serialisation costs little.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_deferred(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


class Database:
    """Owns the engine and the session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _begin_immediate)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads take no write lock: in WAL mode a deferred read transaction sees a consistent
        # snapshot and never waits for the writer, so the dashboard is not held up by a
        # usage flush. A second pool keeps the two kinds of transaction apart.
        self.read_engine: AsyncEngine = self.engine
        if self.is_sqlite:
            self.read_engine = create_async_engine(url, **kwargs)
            event.listen(self.read_engine.sync_engine, "connect", _set_sqlite_pragmas)
            event.listen(self.read_engine.sync_engine, "begin", _begin_deferred)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only: one consistent snapshot, no write lock."""
        async with self.read_sessions() as session, session.begin():
            yield session

    async def upgrade(self, revision: str = "head") -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_alembic, "upgrade", revision)

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
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
        stalls the event loop. The caller disposes of it.
        """
        url = make_url(self.url)
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(url.set(drivername=url.get_backend_name()), **kwargs)
        if self.is_sqlite:
            event.listen(engine, "connect", _set_sqlite_pragmas)
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

"""Copying a whole data set between two databases, of either backend.

Every table of the schema, parents before children, in chunks: the source is read in one
snapshot (one read transaction), each chunk is written in a transaction of its own, and the
counts are compared at the end. Values go through the column types (times stay exact and in UTC,
booleans and bytes as each backend keeps them), except JSON, which is copied as its stored text
so that nothing is re-encoded and SQL NULL stays apart from JSON null.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import JSON, Table, Text, cast, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import Database
from storage.dialect import json_text_param, sequence_resets, snapshot_isolation
from storage.models import Base

# Rows per chunk read and written: big enough for few round trips, small enough to show
# progress on a table of millions every few hundred milliseconds.
CHUNK_ROWS = 5000

# (table, rows copied so far, rows in the table)
Progress = Callable[[str, int, int], None]


def tables() -> list[Table]:
    """Every table of the schema, parents before children."""
    return list(Base.metadata.sorted_tables)


@dataclass(frozen=True, slots=True)
class TableCount:
    table: str
    source: int
    target: int

    @property
    def equal(self) -> bool:
        return self.source == self.target


async def row_counts(conn: AsyncConnection) -> dict[str, int]:
    return {
        table.name: (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        for table in tables()
    }


async def stored_rows(db: Database) -> int:
    """How many rows the schema's tables hold together (0: an empty data set)."""
    async with db.read() as session:
        return sum((await row_counts(await session.connection())).values())


async def clear(db: Database) -> None:
    """Delete every row of every table (children first), in one transaction."""
    async with db.engine.begin() as conn:
        for table in reversed(tables()):
            await conn.execute(delete(table))


async def copy_rows(source: Database, target: Database, progress: Progress) -> list[TableCount]:
    """Copy every row of `source` into `target` (same schema revision, target empty); the
    row counts of both afterwards, table by table."""
    async with source.read_engine.connect() as conn:
        # One snapshot for every table, even while another node writes to the source.
        conn = await conn.execution_options(**snapshot_isolation(conn.dialect))
        async with conn.begin():
            totals = await row_counts(conn)
            for table in tables():
                await _copy_table(conn, target, table, totals[table.name], progress)
    async with target.engine.begin() as conn:
        for table in tables():
            for statement in sequence_resets(table, conn.dialect):
                await conn.execute(statement)
    async with target.read() as session:
        after = await row_counts(await session.connection())
    return [TableCount(name, totals[name], after[name]) for name in totals]


async def _copy_table(
    source: AsyncConnection, target: Database, table: Table, total: int, progress: Progress
) -> None:
    json_keys = {column.key for column in table.columns if isinstance(column.type, JSON)}
    columns = [
        cast(column, Text).label(f"j_{column.key}") if column.key in json_keys else column
        for column in table.columns
    ]
    query = select(*columns).order_by(*table.primary_key.columns)
    statement = insert(table).values({key: json_text_param(f"j_{key}") for key in json_keys})
    copied = 0
    progress(table.name, copied, total)
    result = await source.stream(query.execution_options(yield_per=CHUNK_ROWS))
    async for chunk in result.partitions(CHUNK_ROWS):
        rows = [dict(row._mapping) for row in chunk]
        async with target.engine.begin() as conn:
            await conn.execute(statement, rows)
        copied += len(rows)
        progress(table.name, copied, total)

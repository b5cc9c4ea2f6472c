"""What differs between SQLite and PostgreSQL, in one place.

The rest of storage/ writes one SQL for both backends and asks here for the few parts that
cannot be the same:

- times as text: the usage writer and the rollup readers handle call times as SQLite stores them
  ('2026-01-02 03:04:05.000006', UTC), text that sorts like time and is parsed only when shown.
  SQLite keeps that text as is; PostgreSQL keeps a timestamptz, so `time_text` formats one into
  that text and `time_param` turns that text back into a timestamptz in the statement itself
  (no Python datetime per row, and exact whatever the session's time zone);
- upserts: `INSERT ... ON CONFLICT` has the same meaning on both, under each dialect's own
  construct (`upsert`);
- copying (storage.transfer): JSON kept as its text, one snapshot for every table, and
  PostgreSQL's id sequences moved past ids inserted explicitly.

(SQLite's connection pragmas and its write lock taken at BEGIN stay with the engine, in
storage.db: PostgreSQL needs neither, its readers never wait for writers.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Dialect, String, Table, TextClause, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

# SQLite's text form of a UTC time, in PostgreSQL's to_char() pattern language.
_PG_TIME_TEXT = "YYYY-MM-DD HH24:MI:SS.US"


class time_text(FunctionElement[str]):
    """A stored time as SQLite's text ('YYYY-MM-DD HH:MM:SS.ffffff', UTC) on every backend."""

    type = String()
    name = "time_text"
    inherit_cache = True


class _TimeParam(FunctionElement[str]):
    type = String()
    name = "time_param"
    inherit_cache = True


def time_param(name: str) -> Any:
    """A bound time given as SQLite's text form, stored as a time on every backend."""
    return _TimeParam(bindparam(name, type_=String()))


def _only_argument(element: FunctionElement[Any]) -> Any:
    (argument,) = element.clauses
    return argument


@compiles(time_text)
def _time_text_as_stored(element: time_text, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(_only_argument(element), **kw)


@compiles(time_text, "postgresql")
def _time_text_pg(element: time_text, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(_only_argument(element), **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', '{_PG_TIME_TEXT}')"


@compiles(_TimeParam)
def _time_param_as_stored(element: _TimeParam, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(_only_argument(element), **kw)


@compiles(_TimeParam, "postgresql")
def _time_param_pg(element: _TimeParam, compiler: SQLCompiler, **kw: Any) -> str:
    value = compiler.process(_only_argument(element), **kw)
    # The text has no offset and means UTC: read it as a plain timestamp, then place it in UTC.
    return f"(CAST({value} AS TIMESTAMP WITHOUT TIME ZONE) AT TIME ZONE 'UTC')"


def upsert(table: Any, dialect: Dialect) -> Any:
    """`INSERT` into `table` with the dialect's ON CONFLICT clauses available."""
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    if dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for {dialect.name}")


class _JsonTextParam(FunctionElement[str]):
    type = String()
    name = "json_text_param"
    inherit_cache = True


def json_text_param(name: str) -> Any:
    """A JSON column's value bound as its stored text, kept byte for byte (SQL NULL stays NULL,
    JSON null stays 'null')."""
    return _JsonTextParam(bindparam(name, type_=String()))


@compiles(_JsonTextParam)
def _json_text_as_stored(element: _JsonTextParam, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(_only_argument(element), **kw)


@compiles(_JsonTextParam, "postgresql")
def _json_text_pg(element: _JsonTextParam, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(_only_argument(element), **kw)} AS JSON)"


def snapshot_isolation(dialect: Dialect) -> dict[str, str]:
    """Execution options under which a transaction reads one snapshot of every table.

    A read transaction on SQLite in WAL mode is one already; PostgreSQL's default, READ
    COMMITTED, takes a new snapshot at each statement."""
    return {"isolation_level": "REPEATABLE READ"} if dialect.name == "postgresql" else {}


def sequence_resets(table: Table, dialect: Dialect) -> list[TextClause]:
    """Statements that move `table`'s id generators past the ids inserted explicitly.

    SQLite's rowid ids follow the largest id by themselves; PostgreSQL's sequences do not, and
    the next insert would collide."""
    if dialect.name != "postgresql":
        return []
    return [
        text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
            f"COALESCE(MAX({column.name}), 0) + 1, false) FROM {table.name}"
        )
        for column in table.primary_key.columns
        if column.autoincrement is True
    ]

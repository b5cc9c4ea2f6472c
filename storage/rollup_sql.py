"""The usage writer's statements: compiled once, handed to the driver with plain tuples.

SQLAlchemy's per-row type processing cost more than SQLite's own work, so the hot statements
skip it: times travel as SQLite's stored text (storage.dialect turns it into a time where the
backend stores one), and each statement knows the order its driver wants the values in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    bindparam,
    case,
    func,
    insert,
    or_,
    update,
)

from app.core.usage_record import USAGE_FIELDS
from storage.dialect import time_param, time_text, upsert
from storage.models import (
    ServerTool,
    ToolUsage,
    UsageScopeHourly,
    UsageScopes,
    UsageSeries,
    UsageToolHourly,
)
from storage.usage_math import OWN_COLUMNS, RUNNING_COLUMNS


class Statement:
    """A statement compiled once, run through the driver with tuples in `keys` order."""

    def __init__(self, statement: Any, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql = str(compiled)
        self.keys = tuple(keys)
        self.positional = compiled.positional
        names = list(compiled.positiontup or ()) if compiled.positional else list(keys)
        order = [self.keys.index(name) for name in names]
        self.order = None if order == list(range(len(keys))) else order

    def run(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if not self.positional:
            params: list[Any] = [dict(zip(self.keys, row, strict=True)) for row in rows]
        elif self.order is not None:
            params = [tuple(row[i] for i in self.order) for row in rows]
        else:
            params = rows
        conn.exec_driver_sql(self.sql, params)


# A raw row is its usage record's fields as stored, in their order, then the latency bucket.
RAW_KEYS = (*USAGE_FIELDS, "latency_bucket")
# The names the times are bound by: a column's own name is reserved for its plain value.
RAW_TIME_KEY = "b_called_at"
HOUR_TIME_KEY = "b_last_called"
TOOL_HOUR_KEYS = (
    "series_id",
    "hour",
    "last_called",
    "latency_hist",
    *OWN_COLUMNS,
    *RUNNING_COLUMNS,
)
SCOPE_HOUR_KEYS = ("scope", "hour", "last_called", *RUNNING_COLUMNS, "cum_latency_hist")


class WriterStatements:
    def __init__(self, dialect: Dialect) -> None:
        self.raw = Statement(
            # Inline: no RETURNING of the new ids, which nobody reads.
            insert(ToolUsage).values(called_at=time_param(RAW_TIME_KEY)).inline(),
            dialect,
            tuple(RAW_TIME_KEY if key == "called_at" else key for key in RAW_KEYS),
        )
        self.new_series = Statement(
            upsert(UsageSeries, dialect)
            .on_conflict_do_nothing(index_elements=["server_id", "tool_id", "tool_name"])
            .inline(),
            dialect,
            ("server_id", "tool_id", "tool_name", "last_hour", *RUNNING_COLUMNS),
        )
        self.tool_hour = _hour_upsert(UsageToolHourly, TOOL_HOUR_KEYS, dialect)
        self.series = Statement(
            update(UsageSeries)
            .where(UsageSeries.id == bindparam("b_id"))
            .values(
                last_hour=bindparam("b_last_hour"),
                last_called=time_param("b_last_called"),
                cum_calls=bindparam("b_calls"),
                cum_errors=bindparam("b_errors"),
                cum_timed=bindparam("b_timed"),
                cum_ms=bindparam("b_ms"),
                cum_refused=bindparam("b_refused"),
                cum_cancelled=bindparam("b_cancelled"),
            ),
            dialect,
            (
                "b_id",
                "b_last_hour",
                "b_last_called",
                "b_calls",
                "b_errors",
                "b_timed",
                "b_ms",
                "b_refused",
                "b_cancelled",
            ),
        )
        self.scope_hour = _hour_upsert(UsageScopeHourly, SCOPE_HOUR_KEYS, dialect)
        scopes = upsert(UsageScopes, dialect)
        self.scopes = Statement(
            scopes.on_conflict_do_update(
                index_elements=["scope"],
                set_={
                    "last_hour": case(
                        (UsageScopes.last_hour > scopes.excluded.last_hour, UsageScopes.last_hour),
                        else_=scopes.excluded.last_hour,
                    )
                },
            ),
            dialect,
            ("scope", "last_hour"),
        )
        last_called = time_param("b_last_called")
        self.counters = Statement(
            update(ServerTool)
            .where(ServerTool.id == bindparam("b_id"))
            .values(
                total_calls=ServerTool.total_calls + bindparam("b_calls"),
                total_errors=ServerTool.total_errors + bindparam("b_errors"),
                total_refused=ServerTool.total_refused + bindparam("b_refused"),
                total_cancelled=ServerTool.total_cancelled + bindparam("b_cancelled"),
                last_called=case(
                    (
                        or_(
                            ServerTool.last_called.is_(None),
                            time_text(ServerTool.last_called) < bindparam("b_last_called"),
                        ),
                        last_called,
                    ),
                    else_=ServerTool.last_called,
                ),
                last_error=func.coalesce(bindparam("b_error"), ServerTool.last_error),
                # The series' running totals hold every call of the tool: a true mean, not a
                # mean of batch means.
                avg_response_time_ms=func.coalesce(
                    bindparam("b_avg"), ServerTool.avg_response_time_ms
                ),
                updated_at=time_param("b_now"),
            ),
            dialect,
            (
                "b_id",
                "b_calls",
                "b_errors",
                "b_refused",
                "b_cancelled",
                "b_last_called",
                "b_error",
                "b_avg",
                "b_now",
            ),
        )


def _hour_upsert(table: Any, keys: Sequence[str], dialect: Dialect) -> Statement:
    """Insert or replace the rows of an hourly rollup table, keyed by their first two keys (a
    series or scope, and the hour)."""
    statement = upsert(table, dialect)
    values = {"last_called": time_param(HOUR_TIME_KEY)}
    return Statement(
        statement.values(**values).on_conflict_do_update(
            index_elements=list(keys[:2]),
            set_={key: statement.excluded[key] for key in keys[2:]},
        ),
        dialect,
        tuple(HOUR_TIME_KEY if key == "last_called" else key for key in keys),
    )

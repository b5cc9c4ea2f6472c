"""The usage writer: raw usage rows, their hourly rollups and the tools' counters, written in
one transaction so that they can never disagree.

The rollups (see storage.models) carry running totals: a row for hour h holds everything up to
the end of h, so any whole-hour window is "latest row before the end minus latest row before the
start", two index lookups however long the window. A late row (a call that started before an
hour boundary and was recorded after calls of the next hour) is added to its own hour and to the
running totals of every later hour, so the totals stay exact whatever order rows arrive in.

Everything here is synchronous: the recorder runs it on a worker thread with its own connection,
so the CPU spent on a batch never stalls the event loop. Its statements are compiled once and take
plain tuples (storage.rollup_sql); times travel in SQLite's stored text form, which sorts like
time, and are never parsed (storage.dialect gives that form on every backend).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, or_, select, tuple_

from app.core.usage_record import ANSWERED, UsageRecord
from storage.dialect import time_text
from storage.latency import bucket_of, decode_dense, encode_dense
from storage.models import UsageScopeHourly, UsageScopes, UsageSeries, UsageToolHourly
from storage.rollup_sql import WriterStatements
from storage.usage_math import (
    ALL_SCOPE,
    HOUR_S,
    OWN_COLUMNS,
    RUNNING_COLUMNS,
    SeriesKey,
    as_utc,
    sqlite_time,
)

# IN lists stay well below SQLite's limit on bound parameters.
IN_CHUNK = 2000


def payload_json(value: Any, max_bytes: int) -> str | None:
    """A call's arguments or result as JSON text of at most `max_bytes`.

    A payload over the cap becomes an object that says so and keeps the payload's beginning, so
    a person can still see what the call was about.
    """
    if value is None:
        return None
    text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    keep = max_bytes
    while keep > 0:
        stub = json.dumps(
            {
                "truncated": True,
                "size_bytes": len(encoded),
                "preview": encoded[:keep].decode("utf-8", "ignore"),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        excess = len(stub.encode()) - max_bytes
        if excess <= 0:
            return stub
        keep -= excess
    return json.dumps({"truncated": True, "size_bytes": len(encoded)}, separators=(",", ":"))


# ---- the writer's own arithmetic ---------------------------------------------------------


class _Acc:
    """Usage as the writer keeps it: the newest call time as SQLite text, never parsed.

    `calls`, `errors`, `timed`, `total_ms` and `last` are of answered calls (ok or error);
    refused and cancelled calls are only counted."""

    __slots__ = ("calls", "cancelled", "errors", "hist", "last", "refused", "timed", "total_ms")

    def __init__(
        self,
        calls: int = 0,
        errors: int = 0,
        timed: int = 0,
        total_ms: float = 0.0,
        last: str | None = None,
        hist: dict[int, int] | None = None,
        refused: int = 0,
        cancelled: int = 0,
    ) -> None:
        self.calls = calls
        self.errors = errors
        self.timed = timed
        self.total_ms = total_ms
        self.last = last
        self.hist = {} if hist is None else hist
        self.refused = refused
        self.cancelled = cancelled

    @classmethod
    def of_running(cls, running: Sequence[Any], last: str | None) -> _Acc:
        """From running totals in RUNNING_COLUMNS order."""
        calls, errors, timed, total_ms, refused, cancelled = running
        return cls(calls, errors, timed, total_ms, last, None, refused, cancelled)

    def add(self, other: _Acc, *, hist: bool = True) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.timed += other.timed
        self.total_ms += other.total_ms
        self.refused += other.refused
        self.cancelled += other.cancelled
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last
        if hist:
            own = self.hist
            for index, count in other.hist.items():
                own[index] = own.get(index, 0) + count

    def minus(self, other: _Acc) -> _Acc:
        """Totals before `other` was added; the time is unknown and left empty."""
        return _Acc(
            self.calls - other.calls,
            self.errors - other.errors,
            self.timed - other.timed,
            self.total_ms - other.total_ms,
            refused=self.refused - other.refused,
            cancelled=self.cancelled - other.cancelled,
        )

    def copy(self, *, hist: bool = True) -> _Acc:
        return _Acc(
            self.calls,
            self.errors,
            self.timed,
            self.total_ms,
            self.last,
            dict(self.hist) if hist else None,
            self.refused,
            self.cancelled,
        )

    def running(self) -> tuple[int, int, int, float, int, int]:
        """The running totals in RUNNING_COLUMNS order."""
        return (
            self.calls,
            self.errors,
            self.timed,
            self.total_ms,
            self.refused,
            self.cancelled,
        )

    @property
    def avg_ms(self) -> float | None:
        return self.total_ms / self.timed if self.timed else None


@dataclass(slots=True)
class _HourRow:
    """A rollup row being updated: its running totals and (tool rows only) its own totals."""

    hour: int
    cum: _Acc
    own: _Acc | None = None
    own_blob: bytes | None = None  # this hour's histogram, decoded only if the row is touched
    dirty: bool = False

    def own_acc(self) -> _Acc:
        assert self.own is not None
        if self.own_blob is not None:
            self.own.hist = decode_dense(self.own_blob)
            self.own_blob = None
        return self.own


def _position(chain: list[_HourRow], hour: int) -> int:
    """Where `hour` is or belongs in a chain sorted by hour (new hours are mostly at the end)."""
    position = len(chain)
    while position > 0 and chain[position - 1].hour >= hour:
        position -= 1
    return position


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- the writer ------------------------------------------------------------------------------


class UsageWriter:
    """Writes batches of usage rows with their rollups and the tools' counters.

    Safe with several writers on one database: everything a write is based on is read after the
    transaction took the write lock, which the raw insert (always first) does.
    """

    def __init__(self, *, payload_max_bytes: int | None = None) -> None:
        # None: arguments and results are not stored at all.
        self.payload_max_bytes = payload_max_bytes
        # A series keeps its id forever, so ids found once need no lookup again.
        self._series_ids: dict[SeriesKey, int] = {}
        self._statements: WriterStatements | None = None
        # The running totals of the series of the batch being written.
        self._totals: dict[int, _Acc] = {}

    def forget_series(self) -> None:
        """Drop the cached series ids: a transaction that created some was rolled back."""
        self._series_ids.clear()

    def _sql(self, conn: Connection) -> WriterStatements:
        if self._statements is None:
            self._statements = WriterStatements(conn.dialect)
        return self._statements

    def write(self, conn: Connection, rows: Sequence[UsageRecord]) -> None:
        """Insert `rows` and roll them up, inside the caller's transaction."""
        if not rows:
            return
        sql = self._sql(conn)
        parts: dict[SeriesKey, dict[int, _Acc]] = defaultdict(dict)
        last_errors: dict[str, str] = {}
        raw: list[tuple[Any, ...]] = []
        cap = self.payload_max_bytes
        seconds: dict[int, str] = {}
        for row in rows:
            called_at = as_utc(row.called_at)
            timestamp = called_at.timestamp()
            # The text of a time, from its second's text: a burst shares few seconds.
            second = int(timestamp // 1)
            prefix = seconds.get(second)
            if prefix is None:
                prefix = seconds[second] = sqlite_time(called_at)[:19]
            at = f"{prefix}.{called_at.microsecond:06d}"
            outcome = row.settled_outcome
            answered = outcome in ANSWERED
            ms = row.response_time_ms
            # Only an answered call's time is a response time: a cancel's is the caller's.
            bucket = None if ms is None or not answered else bucket_of(ms)
            success = outcome == "ok"
            key = (row.server_id or "", row.tool_id or "", row.tool_name)
            hours = parts[key]
            hour = int(timestamp // HOUR_S)
            part = hours.get(hour)
            if part is None:
                part = hours[hour] = _Acc()
            if outcome == "refused":
                part.refused += 1
            elif outcome == "cancelled":
                part.cancelled += 1
            else:
                part.calls += 1
                if not success:
                    part.errors += 1
                if bucket is not None:
                    part.timed += 1
                    part.total_ms += ms  # type: ignore[operator]
                    part.hist[bucket] = part.hist.get(bucket, 0) + 1
                if part.last is None or at > part.last:
                    part.last = at
            if outcome == "error" and row.tool_id:
                # The last failed call recorded (records arrive in the order calls ended).
                last_errors[row.tool_id] = row.error_message or "error"
            raw.append(
                (
                    row.server_id,
                    row.tool_id,
                    row.tool_name,
                    at,
                    ms,
                    success,
                    row.error_message,
                    row.source,
                    row.client_name,
                    row.user_id,
                    row.conversation_id,
                    None if cap is None else payload_json(row.arguments, cap),
                    None if cap is None else payload_json(row.result, cap),
                    outcome,
                    bucket,
                )
            )
        sql.raw.run(conn, raw)
        self._roll(conn, parts)
        self._count_for_tools(conn, parts, last_errors)

    def _count_for_tools(
        self, conn: Connection, parts: dict[SeriesKey, dict[int, _Acc]], last_errors: dict[str, str]
    ) -> None:
        """The tools' own counters, in the same transaction as their rows."""
        batch: dict[str, _Acc] = {}
        series_of: dict[str, int] = {}
        for key, hours in parts.items():
            tool_id = key[1]
            if not tool_id:
                continue
            total = batch.setdefault(tool_id, _Acc())
            for part in hours.values():
                total.add(part, hist=False)
            series_of[tool_id] = self._series_ids[key]
        now = sqlite_time(datetime.now(UTC))
        self._sql(conn).counters.run(
            conn,
            [
                (
                    tool_id,
                    total.calls,
                    total.errors,
                    total.refused,
                    total.cancelled,
                    total.last,
                    last_errors.get(tool_id),
                    self._totals[series_of[tool_id]].avg_ms,
                    now,
                )
                for tool_id, total in batch.items()
            ],
        )

    def _roll(self, conn: Connection, parts: dict[SeriesKey, dict[int, _Acc]]) -> None:
        series_ids = self._resolve_series(conn, list(parts))
        by_series = {series_ids[key]: hours for key, hours in parts.items()}
        self._totals = self._roll_tools(conn, by_series)
        # A server's (and everything's) part of an hour is the sum of its tools' parts.
        scopes: dict[str, dict[int, _Acc]] = defaultdict(dict)
        for (server_id, _tool_id, _name), hours in parts.items():
            for hour, part in hours.items():
                for scope in (ALL_SCOPE, server_id) if server_id else (ALL_SCOPE,):
                    total = scopes[scope].get(hour)
                    if total is None:
                        scopes[scope][hour] = part.copy()
                    else:
                        total.add(part)
        self._roll_scopes(conn, scopes)

    # ---- series ------------------------------------------------------------------------

    def _resolve_series(self, conn: Connection, keys: list[SeriesKey]) -> dict[SeriesKey, int]:
        missing = [key for key in keys if key not in self._series_ids]
        if missing:
            empty = _Acc().running()
            self._sql(conn).new_series.run(conn, [(*key, 0, *empty) for key in missing])
            key_columns = tuple_(UsageSeries.server_id, UsageSeries.tool_id, UsageSeries.tool_name)
            for chunk in _chunks(missing):
                found = conn.execute(
                    select(
                        UsageSeries.server_id,
                        UsageSeries.tool_id,
                        UsageSeries.tool_name,
                        UsageSeries.id,
                    ).where(key_columns.in_(chunk))
                )
                for server_id, tool_id, tool_name, series_id in found:
                    self._series_ids[(server_id, tool_id, tool_name)] = series_id
        return {key: self._series_ids[key] for key in keys}

    # ---- per-tool hours ----------------------------------------------------------------

    def _roll_tools(self, conn: Connection, parts: dict[int, dict[int, _Acc]]) -> dict[int, _Acc]:
        """Apply each series' parts hour by hour; returns each series' new running totals."""
        ids = sorted(parts)
        min_hour = min(min(hours) for hours in parts.values())
        running: dict[int, tuple[_Acc, int]] = {}
        chains: dict[int, list[_HourRow]] = defaultdict(list)
        series, hourly = UsageSeries.__table__.c, UsageToolHourly.__table__.c
        for chunk in _chunks(ids):
            rows = conn.execute(
                select(
                    series.id,
                    series.last_hour,
                    time_text(series.last_called),
                    *(series[key] for key in RUNNING_COLUMNS),
                ).where(series.id.in_(chunk))
            )
            for series_id, last_hour, last, *totals in rows:
                running[series_id] = (_Acc.of_running(totals, last), last_hour)
            rows = conn.execute(
                select(
                    hourly.series_id,
                    hourly.hour,
                    time_text(hourly.last_called),
                    hourly.latency_hist,
                    *(hourly[key] for key in OWN_COLUMNS),
                    *(hourly[key] for key in RUNNING_COLUMNS),
                )
                .where(hourly.series_id.in_(chunk), hourly.hour >= min_hour)
                .order_by(hourly.series_id, hourly.hour)
            )
            width = len(OWN_COLUMNS)
            for series_id, hour, last, blob, *totals in rows:
                own = _Acc.of_running(totals[:width], last)
                # The running time up to this hour is this hour's newest call, or older.
                cum = _Acc.of_running(totals[width:], last)
                chains[series_id].append(_HourRow(hour, cum, own=own, own_blob=blob))

        totals: dict[int, _Acc] = {}
        changed: list[tuple[Any, ...]] = []
        series_rows: list[tuple[Any, ...]] = []
        for series_id in ids:
            total, last_hour = running[series_id]
            chain = chains[series_id]
            series_parts = parts[series_id]
            for hour in sorted(series_parts):
                part = series_parts[hour]
                position = _position(chain, hour)
                if position < len(chain) and chain[position].hour == hour:
                    chain[position].own_acc().add(part)
                else:
                    if position > 0:
                        base = chain[position - 1].cum.copy(hist=False)
                    elif chain:
                        base = chain[0].cum.minus(chain[0].own_acc())
                    else:
                        base = total.copy(hist=False)
                    chain.insert(position, _HourRow(hour, base, own=part.copy()))
                for later in chain[position:]:
                    later.cum.add(part, hist=False)
                    later.dirty = True
                total.add(part, hist=False)
                last_hour = max(last_hour, hour)
            totals[series_id] = total
            series_rows.append((series_id, last_hour, total.last, *total.running()))
            for hour_row in chain:
                if hour_row.dirty:
                    own = hour_row.own_acc()
                    changed.append(
                        (
                            series_id,
                            hour_row.hour,
                            own.last,
                            encode_dense(own.hist),
                            *own.running(),
                            *hour_row.cum.running(),
                        )
                    )
        sql = self._sql(conn)
        sql.tool_hour.run(conn, changed)
        sql.series.run(conn, series_rows)
        return totals

    # ---- per-scope hours: each server, and all servers ---------------------------------

    def _roll_scopes(self, conn: Connection, parts: dict[str, dict[int, _Acc]]) -> None:
        scopes = sorted(parts)
        min_hour = min(min(hours) for hours in parts.values())
        last_hours: dict[str, int] = {
            scope: hour
            for scope, hour in conn.execute(
                select(UsageScopes.scope, UsageScopes.last_hour).where(
                    UsageScopes.scope.in_(scopes)
                )
            )
        }
        # A scope whose newest row is older than this batch continues from that row.
        anchors = [(scope, hour) for scope, hour in last_hours.items() if hour < min_hour]
        wanted: list[ColumnElement[bool]] = [
            UsageScopeHourly.scope.in_(scopes) & (UsageScopeHourly.hour >= min_hour)
        ]
        if anchors:
            wanted.append(tuple_(UsageScopeHourly.scope, UsageScopeHourly.hour).in_(anchors))
        chains: dict[str, list[_HourRow]] = defaultdict(list)
        anchor_rows: dict[str, _Acc] = {}
        for row in conn.execute(self._scope_rows().where(or_(*wanted))):
            scope, hour, cum = _scope_row(row)
            if hour < min_hour:
                anchor_rows[scope] = cum
            else:
                chains[scope].append(_HourRow(hour, cum))

        changed: list[tuple[Any, ...]] = []
        for scope in scopes:
            chain = chains[scope]
            for hour in sorted(parts[scope]):
                part = parts[scope][hour]
                position = _position(chain, hour)
                if position == len(chain) or chain[position].hour != hour:
                    if position > 0:
                        base = chain[position - 1].cum.copy()
                    elif scope in anchor_rows:
                        base = anchor_rows[scope].copy()
                    else:
                        base = self._scope_before(conn, scope, hour)
                    chain.insert(position, _HourRow(hour, base))
                for later in chain[position:]:
                    later.cum.add(part)
                    later.dirty = True
            changed.extend(
                (
                    scope,
                    hour_row.hour,
                    hour_row.cum.last,
                    *hour_row.cum.running(),
                    encode_dense(hour_row.cum.hist),
                )
                for hour_row in chain
                if hour_row.dirty
            )
        sql = self._sql(conn)
        sql.scope_hour.run(conn, changed)
        sql.scopes.run(conn, [(scope, max(parts[scope])) for scope in scopes])

    @staticmethod
    def _scope_rows() -> Any:
        hourly = UsageScopeHourly.__table__.c
        return select(
            hourly.scope,
            hourly.hour,
            time_text(hourly.last_called),
            *(hourly[key] for key in RUNNING_COLUMNS),
            hourly.cum_latency_hist,
        ).order_by(hourly.scope, hourly.hour)

    def _scope_before(self, conn: Connection, scope: str, hour: int) -> _Acc:
        row = conn.execute(
            self._scope_rows()
            .where(UsageScopeHourly.scope == scope, UsageScopeHourly.hour < hour)
            .order_by(None)
            .order_by(UsageScopeHourly.hour.desc())
            .limit(1)
        ).first()
        return _scope_row(row)[2] if row is not None else _Acc()


def _scope_row(row: Any) -> tuple[str, int, _Acc]:
    scope, hour, last, *totals, blob = row
    acc = _Acc.of_running(totals, last)
    acc.hist = decode_dense(blob)
    return scope, hour, acc

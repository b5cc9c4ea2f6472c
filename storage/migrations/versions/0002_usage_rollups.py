"""usage rollups: hourly running totals and latency histograms per tool and per server

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import math
import struct
import sys
import zlib
from array import array
from datetime import UTC, datetime
from typing import Any

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The rollups answer every per-tool question; this index's thousand scattered insertion
    # points cost half of every usage insert.
    op.drop_index('ix_tool_usage_tool_called_at', table_name='tool_usage')
    op.add_column('tool_usage', sa.Column('latency_bucket', sa.SmallInteger(), nullable=True))

    op.create_table('usage_series',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('server_id', sa.String(length=36), nullable=False),
    sa.Column('tool_id', sa.String(length=36), nullable=False),
    sa.Column('tool_name', sa.String(length=200), nullable=False),
    sa.Column('last_hour', sa.Integer(), nullable=False),
    sa.Column('last_called', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cum_calls', sa.Integer(), nullable=False),
    sa.Column('cum_errors', sa.Integer(), nullable=False),
    sa.Column('cum_timed', sa.Integer(), nullable=False),
    sa.Column('cum_ms', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('server_id', 'tool_id', 'tool_name', name='uq_usage_series_key')
    )
    with op.batch_alter_table('usage_series', schema=None) as batch_op:
        batch_op.create_index('ix_usage_series_tool_id', ['tool_id'], unique=False)

    op.create_table('usage_tool_hourly',
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('hour', sa.Integer(), nullable=False),
    sa.Column('calls', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('timed_calls', sa.Integer(), nullable=False),
    sa.Column('total_ms', sa.Float(), nullable=False),
    sa.Column('last_called', sa.DateTime(timezone=True), nullable=True),
    sa.Column('latency_hist', sa.LargeBinary(), nullable=True),
    sa.Column('cum_calls', sa.Integer(), nullable=False),
    sa.Column('cum_errors', sa.Integer(), nullable=False),
    sa.Column('cum_timed', sa.Integer(), nullable=False),
    sa.Column('cum_ms', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('series_id', 'hour'),
    sqlite_with_rowid=False
    )
    op.create_table('usage_scopes',
    sa.Column('scope', sa.String(length=36), nullable=False),
    sa.Column('last_hour', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('scope')
    )
    op.create_table('usage_scope_hourly',
    sa.Column('scope', sa.String(length=36), nullable=False),
    sa.Column('hour', sa.Integer(), nullable=False),
    sa.Column('last_called', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cum_calls', sa.Integer(), nullable=False),
    sa.Column('cum_errors', sa.Integer(), nullable=False),
    sa.Column('cum_timed', sa.Integer(), nullable=False),
    sa.Column('cum_ms', sa.Float(), nullable=False),
    sa.Column('cum_latency_hist', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('scope', 'hour')
    )

    # Usage rows written before this revision get their rollups now. No writer existed before
    # it, so this is for hand-made rows.
    connection = op.get_bind()
    if connection.execute(sa.text('SELECT 1 FROM tool_usage LIMIT 1')).first() is not None:
        _roll_up_existing_rows(connection)


def downgrade() -> None:
    op.drop_table('usage_scope_hourly')
    op.drop_table('usage_scopes')
    op.drop_table('usage_tool_hourly')
    with op.batch_alter_table('usage_series', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_series_tool_id')

    op.drop_table('usage_series')
    with op.batch_alter_table('tool_usage', schema=None) as batch_op:
        batch_op.drop_column('latency_bucket')
        batch_op.create_index('ix_tool_usage_tool_called_at', ['tool_id', 'called_at'], unique=False)


# ---- the backfill ------------------------------------------------------------------------------
# The rollups as this revision defines them, computed here and nowhere else: a migration must
# upgrade an old database the same way whatever the live writer and histogram code become.

HOUR_S = 3600
ALL_SCOPE = '*'
CHUNK_ROWS = 20_000

# Latency buckets: log-spaced, each within 1 % of every latency in it, from 0.01 ms to 24 h.
_MIN_MS = 0.01
_MAX_MS = 86_400_000.0
_LOG_GAMMA = math.log((1 + 0.01) / (1 - 0.01))
_BUCKETS = math.ceil(math.log(_MAX_MS / _MIN_MS) / _LOG_GAMMA) + 1
_SWAP = sys.byteorder != 'little'
_OFFSET = struct.Struct('<I')


def _bucket_of(ms: float) -> int:
    if ms <= _MIN_MS:
        return 0
    index = math.ceil(math.log(ms / _MIN_MS) / _LOG_GAMMA)
    return index if index < _BUCKETS else _BUCKETS - 1


def _encode_dense(counts: dict[int, int]) -> bytes:
    """The stored histogram: its lowest used bucket, then compressed little-endian uint64
    counts from there to its highest."""
    used = [index for index, count in counts.items() if count]
    if not used:
        return b''
    low, high = min(used), max(used)
    dense = array('Q', bytes(8 * (high - low + 1)))
    for index in used:
        dense[index - low] = counts[index]
    if _SWAP:
        dense.byteswap()
    return _OFFSET.pack(low) + zlib.compress(dense.tobytes(), 1)


class _Totals:
    """Calls, errors, timed calls, their summed latency, the newest call (as stored text) and
    the latency histogram of a set of calls."""

    __slots__ = ('calls', 'errors', 'hist', 'last', 'timed', 'total_ms')

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.timed = 0
        self.total_ms = 0.0
        self.last: str | None = None
        self.hist: dict[int, int] = {}

    def add(self, other: '_Totals', *, hist: bool = True) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.timed += other.timed
        self.total_ms += other.total_ms
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last
        if hist:
            for index, count in other.hist.items():
                self.hist[index] = self.hist.get(index, 0) + count

    def running(self) -> dict[str, Any]:
        return {
            'cum_calls': self.calls,
            'cum_errors': self.errors,
            'cum_timed': self.timed,
            'cum_ms': self.total_ms,
        }


def _roll_up_existing_rows(connection: sa.Connection) -> None:
    """Give every raw row its latency bucket, and write the rollups of all of them: each
    series' hours with their running totals, and the running totals of each server and of
    everything, hour by hour."""
    if connection.dialect.name != 'sqlite':
        raise NotImplementedError(
            f'rolling up existing usage supports SQLite; {connection.dialect.name} needs its own'
            ' time handling'
        )
    series: dict[tuple[str, str, str], dict[int, _Totals]] = {}
    last_id = 0
    while True:
        batch = connection.execute(
            sa.text(
                'SELECT id, server_id, tool_id, tool_name, called_at, response_time_ms, success'
                ' FROM tool_usage WHERE id > :last_id ORDER BY id LIMIT :chunk'
            ),
            {'last_id': last_id, 'chunk': CHUNK_ROWS},
        ).all()
        if not batch:
            break
        last_id = batch[-1][0]
        buckets = []
        for row_id, server_id, tool_id, tool_name, stored, ms, success in batch:
            called_at = datetime.fromisoformat(stored).replace(tzinfo=UTC)
            hour = int(called_at.timestamp() // HOUR_S)
            key = (server_id or '', tool_id or '', tool_name)
            part = series.setdefault(key, {}).get(hour)
            if part is None:
                part = series[key][hour] = _Totals()
            part.calls += 1
            part.errors += 0 if success else 1
            if ms is not None:
                bucket = _bucket_of(ms)
                buckets.append({'id': row_id, 'bucket': bucket})
                part.timed += 1
                part.total_ms += ms
                part.hist[bucket] = part.hist.get(bucket, 0) + 1
            # As SQLAlchemy stores a time on SQLite, which sorts like the time.
            at = called_at.isoformat(' ', 'microseconds')[:26]
            if part.last is None or at > part.last:
                part.last = at
        if buckets:
            connection.execute(
                sa.text('UPDATE tool_usage SET latency_bucket = :bucket WHERE id = :id'), buckets
            )

    series_rows: list[dict[str, Any]] = []
    tool_hours: list[dict[str, Any]] = []
    scopes: dict[str, dict[int, _Totals]] = {}
    for series_id, (key, hours) in enumerate(series.items(), start=1):
        server_id, tool_id, tool_name = key
        running = _Totals()
        for hour in sorted(hours):
            own = hours[hour]
            running.add(own, hist=False)
            tool_hours.append(
                {
                    'series_id': series_id,
                    'hour': hour,
                    'calls': own.calls,
                    'errors': own.errors,
                    'timed_calls': own.timed,
                    'total_ms': own.total_ms,
                    'last_called': own.last,
                    'latency_hist': _encode_dense(own.hist),
                    **running.running(),
                }
            )
            # A server's (and everything's) part of an hour is the sum of its tools' parts.
            for scope in (ALL_SCOPE, server_id) if server_id else (ALL_SCOPE,):
                scopes.setdefault(scope, {}).setdefault(hour, _Totals()).add(own)
        series_rows.append(
            {
                'id': series_id,
                'server_id': server_id,
                'tool_id': tool_id,
                'tool_name': tool_name,
                'last_hour': max(hours),
                'last_called': running.last,
                **running.running(),
            }
        )

    scope_hours: list[dict[str, Any]] = []
    scope_rows: list[dict[str, Any]] = []
    for scope, hours in scopes.items():
        running = _Totals()
        for hour in sorted(hours):
            running.add(hours[hour])
            scope_hours.append(
                {
                    'scope': scope,
                    'hour': hour,
                    'last_called': running.last,
                    **running.running(),
                    'cum_latency_hist': _encode_dense(running.hist),
                }
            )
        scope_rows.append({'scope': scope, 'last_hour': max(hours)})

    running_columns = 'cum_calls, cum_errors, cum_timed, cum_ms'
    running_values = ':cum_calls, :cum_errors, :cum_timed, :cum_ms'
    connection.execute(
        sa.text(
            'INSERT INTO usage_series (id, server_id, tool_id, tool_name, last_hour, last_called,'
            f' {running_columns}) VALUES (:id, :server_id, :tool_id, :tool_name, :last_hour,'
            f' :last_called, {running_values})'
        ),
        series_rows,
    )
    connection.execute(
        sa.text(
            'INSERT INTO usage_tool_hourly (series_id, hour, calls, errors, timed_calls,'
            f' total_ms, last_called, latency_hist, {running_columns}) VALUES (:series_id,'
            ' :hour, :calls, :errors, :timed_calls, :total_ms, :last_called, :latency_hist,'
            f' {running_values})'
        ),
        tool_hours,
    )
    connection.execute(
        sa.text(
            f'INSERT INTO usage_scope_hourly (scope, hour, last_called, {running_columns},'
            f' cum_latency_hist) VALUES (:scope, :hour, :last_called, {running_values},'
            ' :cum_latency_hist)'
        ),
        scope_hours,
    )
    connection.execute(
        sa.text('INSERT INTO usage_scopes (scope, last_hour) VALUES (:scope, :last_hour)'),
        scope_rows,
    )

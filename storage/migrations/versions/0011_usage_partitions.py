"""tool_usage partitioned by day on PostgreSQL

Revision ID: 0011_usage_partitions
Revises: 0010_nodes
Create Date: 2026-11-30

On PostgreSQL the raw usage rows move into a table partitioned by range of `called_at`, one
partition per UTC day (`tool_usage_pYYYYMMDD`) and a default partition for rows of a day that
has none yet, so retention drops whole days instead of deleting rows one by one. The primary key
becomes (id, called_at): a partitioned table's unique keys must hold the partition column. Ids
keep coming from the same sequence. Every existing row is copied, and a partition is made for
each day that has rows and for the week ahead; the running code makes the later ones.

SQLite keeps its table as it is.
"""

from datetime import UTC, date, datetime, timedelta

from alembic import op
import sqlalchemy as sa

revision = "0011_usage_partitions"
down_revision = "0010_nodes"
branch_labels = None
depends_on = None

DAYS_AHEAD = 7
INDEXES = (
    ("ix_tool_usage_called_at", "called_at"),
    ("ix_tool_usage_server_called_at", "server_id, called_at"),
)


def _day_partition(day: date) -> str:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return (
        f"CREATE TABLE tool_usage_p{day:%Y%m%d} PARTITION OF tool_usage "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE tool_usage RENAME TO tool_usage_unpartitioned")
    op.execute(
        "ALTER TABLE tool_usage_unpartitioned "
        "RENAME CONSTRAINT tool_usage_pkey TO tool_usage_unpartitioned_pkey"
    )
    for name, _columns in INDEXES:
        op.execute(f"DROP INDEX {name}")
    # The sequence would go with the old table.
    op.execute("ALTER SEQUENCE tool_usage_id_seq OWNED BY NONE")
    op.execute(
        "CREATE TABLE tool_usage (LIKE tool_usage_unpartitioned INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS, PRIMARY KEY (id, called_at)) PARTITION BY RANGE (called_at)"
    )
    op.execute("ALTER SEQUENCE tool_usage_id_seq OWNED BY tool_usage.id")
    for name, columns in INDEXES:
        op.execute(f"CREATE INDEX {name} ON tool_usage ({columns})")
    days_with_rows = bind.execute(
        sa.text(
            "SELECT DISTINCT (called_at AT TIME ZONE 'UTC')::date AS day "
            "FROM tool_usage_unpartitioned"
        )
    ).scalars()
    today = datetime.now(UTC).date()
    days = set(days_with_rows) | {today + timedelta(days=ahead) for ahead in range(DAYS_AHEAD + 1)}
    for day in sorted(days):
        op.execute(_day_partition(day))
    op.execute("CREATE TABLE tool_usage_default PARTITION OF tool_usage DEFAULT")
    op.execute("INSERT INTO tool_usage SELECT * FROM tool_usage_unpartitioned")
    op.execute("DROP TABLE tool_usage_unpartitioned")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE tool_usage RENAME TO tool_usage_partitioned")
    op.execute(
        "ALTER TABLE tool_usage_partitioned "
        "RENAME CONSTRAINT tool_usage_pkey TO tool_usage_partitioned_pkey"
    )
    for name, _columns in INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.execute("ALTER SEQUENCE tool_usage_id_seq OWNED BY NONE")
    op.execute(
        "CREATE TABLE tool_usage (LIKE tool_usage_partitioned INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS, PRIMARY KEY (id))"
    )
    op.execute("ALTER SEQUENCE tool_usage_id_seq OWNED BY tool_usage.id")
    for name, columns in INDEXES:
        op.execute(f"CREATE INDEX {name} ON tool_usage ({columns})")
    op.execute("INSERT INTO tool_usage SELECT * FROM tool_usage_partitioned")
    # Its partitions go with it.
    op.execute("DROP TABLE tool_usage_partitioned")

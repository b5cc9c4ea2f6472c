"""each call's outcome (ok, error, refused, cancelled) with its rollups; deck state

Revision ID: 0006_call_outcome
Revises: 0005
Create Date: 2026-11-26

A refused call (disabled, bad arguments, unknown, not running) and a cancelled one are counted
apart from tool errors: `tool_usage.outcome`, and `refused`/`cancelled` counts beside `calls` and
`errors` in every rollup, where `calls` and `errors` keep meaning answered calls and tool errors.
Rows written before this revision cannot be told apart: they stay ok or error by `success`.

`deck_state` remembers what happened once per database, such as seeding the built-in servers.
A database that has built-ins was seeded by an earlier version.
"""

from alembic import op
import sqlalchemy as sa

revision = "0006_call_outcome"
down_revision = "0005"
branch_labels = None
depends_on = None


def _counts(prefix: str) -> list[sa.Column]:
    return [
        sa.Column(f"{prefix}refused", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(f"{prefix}cancelled", sa.Integer(), nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    # A constant default adds the column without rewriting the table; only failed rows change.
    op.add_column(
        "tool_usage",
        sa.Column("outcome", sa.String(length=10), nullable=False, server_default="ok"),
    )
    op.execute("UPDATE tool_usage SET outcome = 'error' WHERE NOT success")
    for table, prefixes in (
        ("usage_series", ("cum_",)),
        ("usage_tool_hourly", ("", "cum_")),
        ("usage_scope_hourly", ("cum_",)),
        ("server_tools", ("total_",)),
    ):
        for prefix in prefixes:
            for column in _counts(prefix):
                op.add_column(table, column)

    op.create_table(
        "deck_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.execute(
        "INSERT INTO deck_state (key, value, updated_at) "
        "SELECT 'builtins_seeded', 'before revision 0006', CURRENT_TIMESTAMP "
        "WHERE EXISTS (SELECT 1 FROM tool_servers WHERE is_builtin)"
    )


def downgrade() -> None:
    op.drop_table("deck_state")
    for table, prefixes in (
        ("server_tools", ("total_",)),
        ("usage_scope_hourly", ("cum_",)),
        ("usage_tool_hourly", ("", "cum_")),
        ("usage_series", ("cum_",)),
    ):
        with op.batch_alter_table(table) as batch_op:
            for prefix in prefixes:
                batch_op.drop_column(f"{prefix}cancelled")
                batch_op.drop_column(f"{prefix}refused")
    with op.batch_alter_table("tool_usage") as batch_op:
        batch_op.drop_column("outcome")

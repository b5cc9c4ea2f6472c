"""usage rollups: hourly running totals and latency histograms per tool and per server

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

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
    # it, so this is for hand-made rows; it uses the rollup code of this revision's era, and a
    # later revision that reshapes these tables must not rely on it.
    connection = op.get_bind()
    if connection.execute(sa.text('SELECT 1 FROM tool_usage LIMIT 1')).first() is not None:
        from storage.rollups import UsageWriter

        UsageWriter().rebuild(connection)


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

"""hard spawn limits and run-as account per stdio server

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("server_limits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rlimit_as_mb", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rlimit_nofile", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rlimit_cpu_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("run_as_user", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("run_as_group", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("server_limits", schema=None) as batch_op:
        batch_op.drop_column("run_as_group")
        batch_op.drop_column("run_as_user")
        batch_op.drop_column("rlimit_cpu_s")
        batch_op.drop_column("rlimit_nofile")
        batch_op.drop_column("rlimit_as_mb")

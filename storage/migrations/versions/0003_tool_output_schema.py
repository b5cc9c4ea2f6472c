"""tool output schemas and annotations, passed through by the gateway

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("server_tools", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output_schema", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("annotations", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("server_tools", schema=None) as batch_op:
        batch_op.drop_column("annotations")
        batch_op.drop_column("output_schema")

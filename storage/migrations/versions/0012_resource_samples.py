"""Memory and CPU samples of local servers' process trees, kept as a series

Revision ID: 0012_resource_samples
Revises: 0011_usage_partitions
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa

revision = "0012_resource_samples"
down_revision = "0011_usage_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rss_bytes", sa.BigInteger(), nullable=True),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_resource_samples_server_sampled", "resource_samples", ["server_id", "sampled_at"]
    )
    op.create_index("ix_resource_samples_sampled_at", "resource_samples", ["sampled_at"])


def downgrade() -> None:
    op.drop_index("ix_resource_samples_sampled_at", table_name="resource_samples")
    op.drop_index("ix_resource_samples_server_sampled", table_name="resource_samples")
    op.drop_table("resource_samples")

"""gateway profiles: named sets of servers and tools with their own endpoint

Revision ID: 0007_profiles
Revises: 0006_call_outcome
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = "0007_profiles"
down_revision = "0006_call_outcome"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_profiles",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("servers", sa.JSON(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("gateway_profiles")

"""named, scoped API tokens, stored as hashes

Revision ID: 0008_tokens
Revises: 0007_profiles
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = "0008_tokens"
down_revision = "0007_profiles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False, unique=True),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")

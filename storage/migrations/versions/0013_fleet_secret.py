"""The fleet's secret: nodes derive from it the credential they show each other's gateways

Revision ID: 0013_fleet_secret
Revises: 0012_resource_samples
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa

revision = "0013_fleet_secret"
down_revision = "0012_resource_samples"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_secret",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fleet_secret")

"""OAuth client registrations and tokens of upstream HTTP servers

Revision ID: 0009_oauth
Revises: 0008_tokens
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = "0009_oauth"
down_revision = "0008_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_oauth",
        sa.Column(
            "server_id",
            sa.String(length=36),
            sa.ForeignKey("tool_servers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("client_info", sa.Text(), nullable=True),
        sa.Column("tokens", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_oauth")

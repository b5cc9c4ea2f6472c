"""Nodes of a fleet on one database, server placement and the leases of `any` servers

Revision ID: 0010_nodes
Revises: 0009_oauth
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa

revision = "0010_nodes"
down_revision = "0009_oauth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("advertise_url", sa.Text(), nullable=True),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "server_leases",
        sa.Column(
            "server_id",
            sa.String(length=36),
            sa.ForeignKey("tool_servers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_server_leases_node", "server_leases", ["node"])
    # Servers from before fleets float: any live node may run them.
    with op.batch_alter_table("tool_servers") as batch:
        batch.add_column(
            sa.Column("placement", sa.String(length=64), nullable=False, server_default="any")
        )
        batch.add_column(sa.Column("status_node", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tool_servers") as batch:
        batch.drop_column("status_node")
        batch.drop_column("placement")
    op.drop_index("ix_server_leases_node", table_name="server_leases")
    op.drop_table("server_leases")
    op.drop_table("nodes")

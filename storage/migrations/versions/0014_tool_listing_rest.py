"""The rest of a tool's listing (icons, execution, _meta), and annotations as the protocol
spells them, so a stopped server's tools are listed as the server gave them

Revision ID: 0014_tool_listing_rest
Revises: 0013_fleet_secret
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa

revision = "0014_tool_listing_rest"
down_revision = "0013_fleet_secret"
branch_labels = None
depends_on = None

TOOLS = sa.table(
    "server_tools",
    sa.column("id", sa.String()),
    sa.column("annotations", sa.JSON()),
)


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def upgrade() -> None:
    with op.batch_alter_table("server_tools", schema=None) as batch_op:
        batch_op.add_column(sa.Column("listing_rest", sa.JSON(), nullable=True))
    # Rows kept before 0013's release hold `read_only_hint`; a client reads `readOnlyHint`.
    bind = op.get_bind()
    rows = bind.execute(sa.select(TOOLS.c.id, TOOLS.c.annotations)).all()
    for tool_id, annotations in rows:
        if not annotations:
            continue
        spelled = {_camel(key): value for key, value in annotations.items()}
        if spelled != annotations:
            bind.execute(
                TOOLS.update().where(TOOLS.c.id == tool_id).values(annotations=spelled)
            )


def downgrade() -> None:
    with op.batch_alter_table("server_tools", schema=None) as batch_op:
        batch_op.drop_column("listing_rest")

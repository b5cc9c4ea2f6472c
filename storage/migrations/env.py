"""Alembic environment: runs on the connection handed over by storage.db.Database."""

from alembic import context

from storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through `tooldeck db upgrade`, which supplies the connection"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables where needed.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()

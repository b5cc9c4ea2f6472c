"""Opening Tooldeck's state: settings, data dir, migrated database, built-in servers."""

from __future__ import annotations

from app.config import Settings
from app.service import Operations
from storage.db import Database


async def open_database(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    await db.upgrade()
    return db


async def open_operations(settings: Settings) -> Operations:
    """The facade on a migrated database with the built-in servers seeded."""
    db = await open_database(settings)
    operations = Operations(db, settings)
    await operations.seed_builtin_servers()
    return operations

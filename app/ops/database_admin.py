"""The database as an operator sees it: is it reachable, at which schema revision, what it holds
(`tooldeck db check`, `tooldeck status`), and moving a data set to another database
(`tooldeck db copy`).

These work on the database itself, never through a running core: a check must not change
anything, and a copy must not race a supervisor's writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from app.core.errors import Conflict, InvalidInput, Unavailable
from app.core.scrub import mask_url
from app.core.settings import Settings, check_database_url
from app.runtime.lock import read_lock
from storage.db import Database, head_revision
from storage.inventory import Inventory, take_inventory
from storage.transfer import Progress, TableCount, clear, copy_rows, stored_rows

# A server that does not answer in this time is reported as unreachable.
CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    url: str  # its password masked
    head: str
    error: str | None = None
    revision: str | None = None
    inventory: Inventory | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def up_to_date(self) -> bool:
        return self.reachable and self.revision == self.head

    def revision_text(self) -> str:
        if self.revision == self.head:
            return f"{self.revision} (up to date)"
        if self.revision is None:
            return f"empty (head is {self.head}: any tooldeck command creates the schema)"
        return f"{self.revision} (head is {self.head}: run `tooldeck db upgrade`)"


async def check_database(url: str) -> DatabaseCheck:
    """Connect, read the schema revision and take an inventory; never changes anything."""
    masked, head = mask_url(url), head_revision()
    db = Database(url)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            revision = await db.current_revision()
            inventory = await take_inventory(db) if revision == head else None
    except TimeoutError:
        return DatabaseCheck(masked, head, error=f"no answer in {CHECK_TIMEOUT_S:.0f} s")
    except Exception as exc:  # whatever the driver raises, the check reports it in one line
        return DatabaseCheck(masked, head, error=_one_line(exc))
    finally:
        await db.dispose()
    return DatabaseCheck(masked, head, revision=revision, inventory=inventory)


async def copy_database(
    settings: Settings,
    *,
    source_url: str,
    target_url: str,
    force: bool,
    progress: Progress,
) -> list[TableCount]:
    """Copy everything from `source_url` into `target_url` and verify the counts.

    The target gets the schema if it has none; one that holds rows is refused unless `force`,
    which deletes them first."""
    for url in (source_url, target_url):
        try:
            check_database_url(url)
        except ValueError as exc:
            raise InvalidInput(f"{mask_url(url)}: {exc}") from None
    if source_url == target_url:
        raise InvalidInput("the source and the target are the same database")
    holder = read_lock(settings.data_dir)
    if holder is not None:
        raise Conflict(
            f"a {holder.kind} (pid {holder.pid}) is using {settings.data_dir}: stop it first, "
            "or the copy could miss what it writes meanwhile"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return await _copy(source_url, target_url, force=force, progress=progress)
    except (SQLAlchemyError, OSError) as exc:
        raise Unavailable(f"the copy stopped: {_one_line(exc)}") from None


async def _copy(
    source_url: str, target_url: str, *, force: bool, progress: Progress
) -> list[TableCount]:
    source, target = Database(source_url), Database(target_url)
    try:
        revision, head = await source.current_revision(), head_revision()
        if revision is None:
            raise InvalidInput(f"{mask_url(source_url)} holds no Tooldeck data")
        if revision != head:
            raise Conflict(
                f"{mask_url(source_url)} is at schema revision {revision}, this "
                f"version writes {head}: run `tooldeck db upgrade` on it first"
            )
        await target.upgrade()
        held = await stored_rows(target)
        if held and not force:
            raise Conflict(
                f"{mask_url(target_url)} already holds {held:,} rows: --force replaces them"
            )
        if held:
            await clear(target)
        counts = await copy_rows(source, target, progress)
    finally:
        await source.dispose()
        await target.dispose()
    unequal = [count for count in counts if not count.equal]
    if unequal:
        raise Conflict(
            "the copy is incomplete: "
            + ", ".join(f"{c.table} {c.target:,} of {c.source:,} rows" for c in unequal)
        )
    return counts


def _one_line(exc: BaseException) -> str:
    # SQLAlchemy appends a link to its error guide: noise in a one-line report.
    text = str(exc).split("(Background on this error at:")[0]
    return f"{type(exc).__name__}: {' '.join(text.split())}"

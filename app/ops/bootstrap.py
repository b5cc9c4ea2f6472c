"""Opening Tooldeck's state (data dir, migrated database, built-in servers) and wiring a running
core: supervisor, usage recorder, scheduler, alert engine and resource watchdog."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.private_files import create_private, narrow_modes, private_dir
from app.core.settings import Settings
from app.governance.alerts import AlertEngine
from app.governance.limits_watchdog import ResourceWatchdog, load_limits
from app.ops.facade import LocalOperations
from app.runtime.change_relay import ChangeRelay
from app.runtime.fleet import Fleet
from app.runtime.node_credentials import fleet_keys
from app.runtime.peers import PeerLinks
from app.runtime.scheduler import Job, Scheduler, core_scheduler
from app.runtime.supervisor import Supervisor
from app.runtime.usage import UsageRecorder
from storage.db import Database, head_revision
from storage.usage_partitions import is_partitioned, prepare

# Usage recorded but not yet in the database, for the next start to write after a kill.
JOURNAL_DIR = "usage-journal"
# Every job of a running core's scheduler: the core scheduler's and the two added here. Named
# up front so `tooldeck jobs run` can list them without a running core.
JOB_NAMES = ("health", "capabilities", "cleanup", "resources", "alerts", "limits", "fleet")
# One node on SQLite: its heartbeat only keeps `tooldeck nodes` truthful, no lease hangs on it.
SOLO_HEARTBEAT_S = 60.0


def prepare_private_storage(settings: Settings) -> None:
    """The data dir 0700 and the database file 0600 before SQLite opens it; modes left wider
    by an older version or a loose umask are narrowed, and a warning names them."""
    private_dir(settings.data_dir)
    database_files: list[Path] = []
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database).expanduser()
        # A database elsewhere: its own files are narrowed, never the folder someone chose.
        database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private(database)
        database_files = [database.with_name(database.name + end) for end in SQLITE_FILE_ENDS]
    narrow_modes(settings.data_dir, *database_files)


SQLITE_FILE_ENDS = ("", "-wal", "-shm", "-journal")


async def open_database(settings: Settings) -> Database:
    prepare_private_storage(settings)
    db = Database.of(settings)
    await db.upgrade()
    return db


async def upgrade_schema(settings: Settings) -> tuple[str | None, str | None]:
    """Apply pending migrations; the schema revisions before and after (None: empty)."""
    db = _unmigrated(settings)
    try:
        before = await db.current_revision()
        await db.upgrade()
        return before, await db.current_revision()
    finally:
        await db.dispose()


async def schema_revisions(settings: Settings) -> tuple[str | None, str]:
    """The database's schema revision (None: empty) and the newest one this code knows."""
    db = _unmigrated(settings)
    try:
        return await db.current_revision(), head_revision()
    finally:
        await db.dispose()


def _unmigrated(settings: Settings) -> Database:
    # Not migrated on opening: these two report on the migration or carry it out.
    prepare_private_storage(settings)
    return Database.of(settings)


async def open_operations(settings: Settings) -> LocalOperations:
    """The facade on a migrated database with the built-in servers seeded."""
    db = await open_database(settings)
    operations = LocalOperations(db, settings)
    await operations.seed_builtin_servers()
    return operations


@asynccontextmanager
async def relayed_changes(ops: LocalOperations) -> AsyncIterator[None]:
    """On PostgreSQL, other processes on the database hear of this one's changes, and it of
    theirs, while the context is open; the last ones are sent before it closes."""
    if ops.db.is_sqlite:
        yield
        return
    relay = ChangeRelay(ops.changes, ops.db)
    await relay.start()
    try:
        yield
    finally:
        await relay.stop()


@asynccontextmanager
async def running_core(
    settings: Settings, *, autostart: bool = True, advertise_url: str | None = None
) -> AsyncIterator[LocalOperations]:
    """The whole runtime behind the facade: supervisor, scheduler and usage recorder.

    On entry, statuses left by a crashed process are reset and the auto-start servers begin
    starting (in the background; `autostart=False` starts none, for a one-shot call); on exit
    every server is stopped, no child is left behind, and recorded usage is flushed. The
    caller must hold the data dir's supervisor lock.

    On PostgreSQL the core is a node of the fleet (app.runtime.fleet): it runs the servers
    placed on it and the `any` servers whose leases it holds; `advertise_url` is where other
    nodes reach it. A one-shot call (`autostart=False`) claims no lease.
    """
    async with AsyncExitStack() as stack:
        ops = await open_operations(settings)
        stack.push_async_callback(ops.db.dispose)
        await stack.enter_async_context(relayed_changes(ops))
        if await is_partitioned(ops.db):
            # The cleanup job makes them too, but only once a day and not before a day is out.
            await prepare(ops.db, datetime.now(UTC), settings.tool_server_usage_retention_days)
        recorder = UsageRecorder(ops.db, settings, journal_dir=settings.data_dir / JOURNAL_DIR)
        await recorder.start()
        # Pushed before the supervisor: exits run in reverse, so calls still in flight when the
        # servers stop are recorded before the final flush.
        stack.push_async_callback(recorder.stop)
        ops.recorder = recorder
        fleet = Fleet(ops.db, settings, advertise_url=advertise_url, claims=autostart)
        await fleet.join()
        # Pushed before the supervisor: leases are given up only once their servers stopped.
        stack.push_async_callback(fleet.leave)
        supervisor = Supervisor(ops.db, settings, changes=ops.changes, fleet=fleet)
        stack.push_async_callback(supervisor.shutdown)
        ops.runtime = supervisor
        await supervisor.startup(autostart=autostart)
        scheduler = core_scheduler(ops.db, settings, supervisor)
        if fleet.shared and fleet.claims:
            ops.node_keys = await fleet_keys(ops.db)
            ops.peers = PeerLinks(
                ops.db,
                supervisor.connections,
                ops.node_keys,
                node=fleet.name,
                lease_s=settings.lease_s,
                max_message_bytes=settings.max_result_bytes,
            )
            ops.peers.watch(ops.changes)
            # Pushed after the supervisor: the links close before this node's servers stop.
            stack.push_async_callback(ops.peers.close)
        scheduler.add(fleet_job(fleet, supervisor, ops.peers))
        if fleet.claims:
            # The first claims at once, not one interval from now.
            await fleet.heartbeat()
            if ops.peers is not None:
                await ops.peers.sync()
        stack.push_async_callback(await install_alerting(ops, supervisor, scheduler))
        await scheduler.start()
        stack.push_async_callback(scheduler.stop)
        ops.scheduler = scheduler
        yield ops


def fleet_job(fleet: Fleet, supervisor: Supervisor, peers: PeerLinks | None = None) -> Job:
    async def beat() -> str:
        if not fleet.claims:
            return "a one-shot run: not a node of the fleet"
        outcome = await fleet.heartbeat()
        if fleet.shared:
            await supervisor.reconcile()
        if peers is not None:
            # Also catches a node that stopped beating: its servers' links close.
            await peers.sync()
        return outcome

    return Job(
        "fleet",
        "record this node's heartbeat, renew and claim server leases",
        fleet.heartbeat_s if fleet.shared else SOLO_HEARTBEAT_S,
        beat,
    )


async def install_alerting(
    ops: LocalOperations, supervisor: Supervisor, scheduler: Scheduler
) -> Callable[[], Awaitable[None]]:
    """Add the `alerts` and `limits` jobs (before the scheduler starts); returns the closer."""
    engine = AlertEngine(ops.db, ops.settings)
    engine.watch(ops.changes)
    ops.alerts = engine
    if isinstance(ops.recorder, UsageRecorder):
        ops.recorder.on_failing = engine.usage_writes
    supervisor.call_gates.load(await load_limits(ops.db))
    watchdog = ResourceWatchdog(ops.db, supervisor, engine)
    scheduler.add(
        Job(
            "alerts",
            "evaluate the alert rules and deliver new alerts",
            ops.settings.alert_interval_s,
            engine.evaluate,
        )
    )
    scheduler.add(
        Job(
            "limits",
            "sample the memory and CPU of servers with limits; restart those over them",
            ops.settings.limits_sample_interval_s,
            watchdog.sweep,
        )
    )
    return engine.close

"""The supervisor: runs each server in its own task, watches it, and recovers or gives up.

One lifecycle task per server that should run. A task connects (`app.runtime.connections`), lists
the tools, marks the server running, then waits for one of: a stop request, the connection
ending (the child exited), a failed health probe, or a `list_changed` notification. Failures
are retried with exponential backoff; at `max_failures` in a row the server is disabled.

Only the supervisor writes a server's reality fields (through `ServerState`) and the tools'
listing and availability (through `ToolCatalogue`). Every state change is also an event row.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import mcp_types as types
from mcp.shared.exceptions import MCPError

from app.core.changes import Change, ChangeBus
from app.core.errors import CallFailed, Conflict, NotFound, NotRunning, StartFailed, plain_error
from app.core.events import EventKind
from app.core.log_files import FLEET_SECRETS
from app.core.schemas import ServerHealth, ServerRuntimeInfo
from app.core.scrub import Scrubber
from app.core.settings import Settings
from app.runtime.call_gates import CallGates
from app.runtime.connections import (
    Connection,
    ConnectionRegistry,
    ConnectionSpec,
    NeedsLogin,
    StartError,
    end_process_group,
    open_connection,
    seconds,
)
from app.runtime.fleet import Fleet, Placed
from app.runtime.process_registry import ProcessRegistry
from app.runtime.process_sampling import ProcessSampler
from app.runtime.server_state import SYSTEM, UP_STATUSES, KnownServer, ServerState
from app.runtime.serverlog import LogWriter, ServerLog, log_path, read_log_tail
from app.runtime.tool_catalogue import ToolCatalogue
from app.runtime.upstream_oauth import unattended_auth
from storage.db import Database
from storage.models import ANY_NODE, ToolServer
from storage.resource_history import read_series

logger = logging.getLogger(__name__)

# A remote server's memory and CPU are shown from its owner's samples up to this many sample
# intervals old (one sweep may be late); older, they say nothing about it now.
REMOTE_SAMPLE_INTERVALS = 3

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class _Handle:
    """What the supervisor knows about one server in memory."""

    server_id: str
    name: str
    log: ServerLog
    task: asyncio.Task[None] | None = None
    conn: Connection | None = None
    status: str = "stopped"
    want_running: bool = False
    was_enabled: bool = True
    # One event wakes the lifecycle for every reason; the flags below say which.
    signal: asyncio.Event = field(default_factory=asyncio.Event)
    fault: str | None = None
    tools_dirty: bool = False
    tools_failed: bool = False
    slow: bool = False
    # The outcome of the current start attempt: None when it runs, else why it failed.
    attempt: asyncio.Future[str | None] | None = None
    actor: str = SYSTEM
    stop_actor: str = SYSTEM
    stop_reason: str | None = None
    control: asyncio.Lock = field(default_factory=asyncio.Lock)
    discovery: asyncio.Lock = field(default_factory=asyncio.Lock)
    spec: ConnectionSpec | None = None
    sampler: ProcessSampler = field(default_factory=ProcessSampler)
    # The `resources` job's own: its CPU% then covers the time since its last sample, not since
    # whichever read (a dashboard's, the limits watchdog's) came last.
    history_sampler: ProcessSampler = field(default_factory=ProcessSampler)
    started_at: datetime | None = None
    next_retry_at: datetime | None = None
    last_error: str | None = None
    last_latency_ms: float | None = None
    # The last start ended because the server wants an OAuth login: no retry until one.
    needs_login: bool = False
    # This node may not run it (placed elsewhere, or its lease is gone): nothing of its state
    # in the database is this node's to write.
    refused: bool = False

    @property
    def pid(self) -> int | None:
        return self.conn.pid if self.conn is not None else None


def _prime(pid: int, *samplers: ProcessSampler) -> None:
    for sampler in samplers:
        sampler.sample(pid)


def _log_bug(handle: _Handle, doing: str) -> None:
    """A bug, logged with its traceback, which may quote the server's secrets (an HTTP
    library's error repeats a header): scrubbed like every other text about the server."""
    trace = handle.log.scrub(traceback.format_exc())
    logger.error("%s %s failed\n%s", doing, handle.name, trace.rstrip())


class Supervisor:
    """Implements the facade's `Runtime` protocol."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        stable_after_s: float = 10.0,
        stop_timeout_s: float = 10.0,
        changes: ChangeBus | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        self.db = db
        # Which servers this node runs: all of them but on a fleet on a shared database.
        self.fleet = fleet
        if fleet is not None:
            fleet.on_leases = self._leases_changed
        self.settings = settings
        # Tells the dashboard and the gateway at once instead of at their next poll.
        self.changes = changes if changes is not None else ChangeBus()
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        # A start only clears the failure count once the server has stayed up this long, so a
        # server that crashes a second after every start still reaches `max_failures`.
        self.stable_after_s = stable_after_s
        self.stop_timeout_s = stop_timeout_s
        self._handles: dict[str, _Handle] = {}
        self._log_writer = LogWriter(settings.log_max_bytes, settings.log_backups)
        self._background: set[asyncio.Task[Any]] = set()
        self._autostart: asyncio.Task[None] | None = None
        self._closing = False
        # Per-server concurrent-call limits (app.runtime.call_gates), loaded by the facade and
        # the watchdog.
        self.call_gates = CallGates()
        # The process groups of running servers, for the next start to end what a killed
        # Tooldeck left behind.
        self.processes = ProcessRegistry(settings.data_dir)
        # The live connection of each running server, shared with the gateway's router.
        self.connections = ConnectionRegistry()
        shared = fleet is not None and fleet.shared
        self.state = ServerState(db, fleet.name if shared else None)
        self.catalogue = ToolCatalogue(db, self._publish)

    # ---- life of the supervisor itself ------------------------------------------------------

    async def startup(self, *, autostart: bool = True) -> None:
        """Reset statuses a crashed process left behind, then start the auto-start servers
        (unless `autostart` is off: a one-shot CLI call starts only the server it calls).

        Returns once the reset is done; the starts go on in the background (see
        `wait_autostart`), so a slow server does not hold the dashboard up.
        """
        await self._end_leftovers()
        servers = await self.state.settle_after_crash(self._pinned_here)
        for server in servers:
            self._handle_for(server.id, server.name).was_enabled = server.enabled
        mine = [server for server in servers if self._pinned_here(server)]
        if len(mine) == len(servers):
            await self.catalogue.mark_unavailable()
        else:
            for server in mine:
                await self.catalogue.mark_unavailable(server.id)
        # `any` servers of a fleet start as this node claims their leases (`_leases_changed`).
        targets = [s.id for s in mine if s.enabled and s.auto_start and autostart]
        self._publish(Change.STATUS, None)
        self._autostart = asyncio.create_task(self._start_all(targets), name="autostart")

    async def _end_leftovers(self) -> None:
        """End what servers of a killed Tooldeck started and left running (their own children:
        the servers themselves died with it), before any server starts again."""
        for left in await asyncio.to_thread(self.processes.sweep):
            pids = ", ".join(str(pid) for pid in left.pids)
            message = (
                f"ended {len(left.pids)} process{'es' if len(left.pids) != 1 else ''} a previous "
                f"Tooldeck left running (pid {pids}"
                + ("; SIGKILL after SIGTERM was ignored)" if left.killed else ")")
            )
            logger.warning("%s: %s", left.server, message)
            await self.state.leftovers_ended(left.server, message)

    async def wait_autostart(self) -> None:
        if self._autostart is not None:
            await asyncio.shield(self._autostart)

    async def _start_all(self, server_ids: list[str]) -> None:
        limit = asyncio.Semaphore(self.settings.start_concurrency)

        async def one(server_id: str) -> None:
            async with limit:
                if self._closing:
                    return
                try:
                    await self.start(server_id, actor=SYSTEM)
                except (StartFailed, Conflict, NotFound) as exc:
                    logger.info("auto-start of %s failed: %s", server_id, exc)

        await asyncio.gather(*(one(server_id) for server_id in server_ids))

    async def shutdown(self) -> None:
        """Stop every server in parallel; no child survives, whatever it does with SIGTERM."""
        self._closing = True
        if self._autostart is not None and not self._autostart.done():
            self._autostart.cancel()
            with suppress(asyncio.CancelledError):
                await self._autostart
        handles = [handle for handle in self._handles.values() if handle.task is not None]
        await asyncio.gather(
            *(self._stop_handle(handle, SYSTEM, "Tooldeck shut down") for handle in handles)
        )
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.to_thread(self._log_writer.close)

    # ---- the Runtime protocol -----------------------------------------------------------

    async def start(self, server_id: str, *, actor: str) -> None:
        """Start a server and wait for the outcome of the first attempt.

        Raises StartFailed with the cause when it fails; retries go on in the background.
        """
        if self._closing:
            raise NotRunning("Tooldeck is shutting down")
        row = await self._row(server_id)
        if not row.enabled:
            why = f" ({row.disabled_reason})" if row.disabled_reason else ""
            raise Conflict(f"{row.name} is disabled{why}: enable it first")
        await self._claim_to_start(row)
        self._refuse_elsewhere(row)
        handle = self._handle_for(row.id, row.name)
        handle.was_enabled = True
        async with handle.control:
            if handle.task is not None and handle.status in UP_STATUSES:
                return
            waiter = self._launch(handle, actor)
        await self._outcome(handle, waiter)

    async def stop(self, server_id: str, *, actor: str) -> None:
        handle = self._handles.get(server_id)
        if handle is None or handle.task is None:
            # Another node's server: its status is that node's to write.
            self._refuse_elsewhere(await self._row(server_id))
            await self._settle_stale(server_id, actor)
            return
        async with handle.control:
            await self._stop_handle(handle, actor, None)

    async def restart(self, server_id: str, *, actor: str) -> None:
        row = await self._row(server_id)
        if not row.enabled:
            raise Conflict(f"{row.name} is disabled: enable it first")
        await self._claim_to_start(row)
        self._refuse_elsewhere(row)
        handle = self._handle_for(row.id, row.name)
        await self.state.restarting(row.id, row.name, actor)
        async with handle.control:
            await self._stop_handle(handle, actor, "restart")
            waiter = self._launch(handle, actor)
        await self._outcome(handle, waiter)

    async def refresh_tools(self, server_id: str, *, actor: str) -> int:
        handle = self._handles.get(server_id)
        conn = handle.conn if handle is not None else None
        if handle is None or conn is None:
            row = await self._row(server_id)
            raise NotRunning(f"{row.name} is not running: start it to list its tools")
        tools = await self._discover(handle, conn, actor)
        if tools is None:
            raise NotRunning(f"{handle.name} did not list its tools: {handle.last_error}")
        return len(tools)

    async def intent_changed(self, server_id: str) -> None:
        """Bring reality in line with what a person just changed."""
        if self._closing:
            return
        try:
            row = await self.state.row(server_id)
        except NotFound:
            await self.forget(server_id)
            return
        enabled, auto_start, name = row.enabled, row.auto_start, row.name
        refused = self._refusal(row)
        spec = ConnectionSpec.of(row)
        if spec is None:
            await self.forget(server_id)
            return
        # A server this supervisor has not seen yet was just created (or enabled elsewhere):
        # for auto-start, that counts as newly enabled.
        first_seen = server_id not in self._handles
        handle = self._handle_for(server_id, name)
        running = handle.task is not None
        if not enabled:
            handle.was_enabled = False
            if running:
                await self.stop(server_id, actor=SYSTEM)
            return
        if refused is not None:
            # Placed elsewhere now: it stops here, and its new node starts it.
            if running:
                async with handle.control:
                    await self._stop_handle(handle, SYSTEM, refused)
            return
        newly_enabled = first_seen or not handle.was_enabled
        handle.was_enabled = True
        if running and handle.spec is not None and handle.spec != spec:
            self._spawn(self._quiet(self.restart(server_id, actor=SYSTEM)), f"restart {name}")
        elif not running and auto_start and newly_enabled:
            self._spawn(self._quiet(self.start(server_id, actor=SYSTEM)), f"start {name}")

    async def forget(self, server_id: str) -> None:
        handle = self._handles.get(server_id)
        if handle is None:
            return
        if handle.task is not None:
            async with handle.control:
                await self._stop_handle(handle, SYSTEM, "server deleted")
        self._handles.pop(server_id, None)
        if handle.log.path is not None:
            self._log_writer.release(handle.log.path)

    # ---- more runtime operations ----------------------------------------------------------

    def is_running(self, server_id: str) -> bool:
        handle = self._handles.get(server_id)
        return handle is not None and handle.conn is not None and handle.status in UP_STATUSES

    async def check_health(self, server_id: str) -> ServerHealth:
        """Probe a server now: `ping` (or a tool listing where ping is missing), timed."""
        row = await self._row(server_id)
        handle = self._handles.get(server_id)
        conn = handle.conn if handle is not None else None
        available = await self.catalogue.available_count(server_id)
        if handle is None or conn is None:
            return ServerHealth(
                server_id=row.id,
                server_name=row.name,
                status=row.status,  # type: ignore[arg-type]
                is_running=False,
                is_responsive=False,
                tools_count=available,
                last_check=row.last_health_check,
                error_message=(handle.last_error if handle else None)
                or row.disabled_reason
                or row.last_startup_error
                or "not running",
            )
        timeout = self.settings.health_check_timeout_s
        began = time.monotonic()
        error: str | None = None
        try:
            await conn.ping(timeout)
        except TimeoutError:
            error = f"health check timed out after {seconds(timeout)} s"
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                error = "health check failed: connection lost"
            else:
                error = f"health check failed: {exc.message}"
        except Exception as exc:
            _log_bug(handle, "health check of")
            error = f"health check failed: {plain_error(exc)}"
        error = handle.log.scrub.optional(error)
        latency = (time.monotonic() - began) * 1000
        now = utcnow()
        handle.last_latency_ms = None if error else latency
        if error is not None:
            status = "error"
            await self.state.health_checked(server_id, at=now)
            if handle.conn is conn and handle.want_running:
                # The lifecycle counts the failure and reconnects after the backoff.
                handle.fault = error
                handle.signal.set()
        else:
            handle.slow = latency > self.settings.degraded_latency_ms
            status = await self._set_quality(handle, conn, now=now, reset_failures=True)
        return ServerHealth(
            server_id=row.id,
            server_name=row.name,
            status=status,  # type: ignore[arg-type]
            is_running=True,
            is_responsive=error is None,
            tools_count=available,
            last_check=now,
            error_message=error,
            latency_ms=round(latency, 2),
        )

    async def check_all(self, server_ids: list[str] | None = None) -> list[ServerHealth]:
        """Probe many servers at once, at most `health_concurrency` at a time."""
        if server_ids is None:
            server_ids = [sid for sid, handle in self._handles.items() if handle.conn is not None]
        limit = asyncio.Semaphore(self.settings.health_concurrency)

        async def one(server_id: str) -> ServerHealth | None:
            async with limit:
                try:
                    return await self.check_health(server_id)
                except NotFound:
                    return None

        results = await asyncio.gather(*(one(server_id) for server_id in server_ids))
        return [result for result in results if result is not None]

    async def call_tool(
        self, server_id: str, tool_name: str, arguments: dict[str, Any], *, timeout_s: float
    ) -> types.CallToolResult:
        """Call a tool on a running server. Raises CallFailed when no result came back."""
        conn = self.connection(server_id)
        if conn is None:
            row = await self._row(server_id)
            raise NotRunning(f"{row.name} is not running")
        try:
            # A call queued at its server's concurrency limit waits within its own timeout.
            async with asyncio.timeout(timeout_s), self.call_gates.slot(server_id, conn.spec.name):
                return await conn.call_tool(tool_name, arguments)
        except TimeoutError:
            raise CallFailed(f"{tool_name} timed out after {seconds(timeout_s)} s") from None
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                raise CallFailed(
                    f"{conn.spec.name} closed the connection during the call"
                ) from None
            failed = self._scrubbed(server_id, f"{tool_name} failed: {exc.message}")
            raise CallFailed(failed) from None
        except ValueError as exc:
            # A result that is not a CallToolResult (pydantic's ValidationError).
            raise CallFailed(f"{tool_name} returned an invalid result: {exc}") from None

    async def upstream(
        self,
        server_id: str,
        request: Callable[[Connection], Awaitable[T]],
        *,
        what: str,
        timeout_s: float,
    ) -> T:
        """Run one request (list resources, get a prompt...) on a running server's connection,
        within a timeout, with the same errors as a tool call."""
        conn = self.connection(server_id)
        if conn is None:
            row = await self._row(server_id)
            raise NotRunning(f"{row.name} is not running")
        try:
            async with asyncio.timeout(timeout_s):
                return await request(conn)
        except TimeoutError:
            raise CallFailed(f"{what} timed out after {seconds(timeout_s)} s") from None
        except MCPError as exc:
            raise CallFailed(self._scrubbed(server_id, f"{what} failed: {exc.message}")) from None

    def _scrubbed(self, server_id: str, text: str) -> str:
        handle = self._handles.get(server_id)
        return handle.log.scrub(text) if handle is not None else text

    def connection(self, server_id: str) -> Connection | None:
        handle = self._handles.get(server_id)
        if handle is None or handle.status not in UP_STATUSES:
            return None
        return handle.conn

    async def log_tail(self, server_id: str, lines: int = 100) -> list[str]:
        handle = self._handles.get(server_id)
        if handle is not None and handle.log.tail(1):
            return handle.log.tail(lines)
        row = await self._row(server_id)
        return await asyncio.to_thread(read_log_tail, log_path(self.settings, row.name), lines)

    async def runtime_info(self, server_id: str) -> ServerRuntimeInfo:
        row = await self._row(server_id)
        handle = self._handles.get(server_id)
        info = ServerRuntimeInfo(
            server_id=row.id,
            server_name=row.name,
            status=row.status,  # type: ignore[arg-type]
            log_path=str(log_path(self.settings, row.name)),
        )
        if handle is None:
            if row.status in UP_STATUSES:
                await self._remote_figures(info)
            return info
        info.last_error = handle.last_error
        info.next_retry_at = handle.next_retry_at
        info.latency_ms = handle.last_latency_ms
        conn = handle.conn
        if conn is not None:
            info.started_at = handle.started_at
            info.uptime_s = round(time.monotonic() - conn.started, 1)
            info.protocol_version = conn.protocol_version
            info.implementation = f"{conn.server_name} {conn.server_version}".strip()
            info.pid = conn.pid
            if conn.pid is not None:
                info.rss_bytes, info.cpu_percent, info.processes = await asyncio.to_thread(
                    handle.sampler.sample, conn.pid
                )
        return info

    async def _remote_figures(self, info: ServerRuntimeInfo) -> None:
        """A server up with no process here runs on another node: its memory and CPU are the
        owner's latest stored sample, if recent; its log file is not on this machine."""
        info.log_path = None
        recent = datetime.now(UTC) - timedelta(
            seconds=REMOTE_SAMPLE_INTERVALS * self.settings.resource_sample_interval_s
        )
        latest = await read_series(self.db, info.server_id, recent, limit=1)
        if latest:
            info.rss_bytes, info.cpu_percent = latest[0].rss_bytes, latest[0].cpu_percent

    async def sample_processes(self) -> list[tuple[str, int | None, float | None]]:
        """(server id, RSS bytes, CPU%) of every running server with a local process, all read
        on one thread: a thousand servers cost one hop off the event loop, not a thousand."""
        measured = [
            (handle, pid)
            for handle in list(self._handles.values())
            if handle.status in UP_STATUSES and (pid := handle.pid) is not None
        ]

        def sample_all() -> list[tuple[str, int | None, float | None]]:
            samples = []
            for handle, pid in measured:
                rss, cpu, _ = handle.history_sampler.sample(pid)
                samples.append((handle.server_id, rss, cpu))
            return samples

        return await asyncio.to_thread(sample_all) if measured else []

    # ---- lifecycle ----------------------------------------------------------------------

    def _handle_for(self, server_id: str, name: str) -> _Handle:
        handle = self._handles.get(server_id)
        if handle is None:
            path = log_path(self.settings, name)
            handle = _Handle(server_id, name, ServerLog(path, self._log_writer))
            self._handles[server_id] = handle
        return handle

    def _launch(self, handle: _Handle, actor: str) -> asyncio.Future[str | None]:
        if handle.attempt is None or handle.attempt.done():
            handle.attempt = asyncio.get_running_loop().create_future()
        handle.actor = actor
        handle.want_running = True
        if handle.task is None:
            handle.task = asyncio.create_task(self._lifecycle(handle), name=f"server:{handle.name}")
        else:
            handle.signal.set()  # cuts a backoff short
        return handle.attempt

    async def _outcome(self, handle: _Handle, waiter: asyncio.Future[str | None]) -> None:
        failure = await asyncio.shield(waiter)
        if failure is not None:
            raise StartFailed(f"{handle.name}: {failure}")

    @staticmethod
    def _settle(handle: _Handle, failure: str | None) -> None:
        if handle.attempt is not None and not handle.attempt.done():
            handle.attempt.set_result(failure)

    async def _lifecycle(self, handle: _Handle) -> None:
        auto_disabled = False
        try:
            while handle.want_running and not self._closing:
                failure = await self._attempt(handle)
                handle.actor = SYSTEM
                if failure is None or not handle.want_running:
                    break
                if self.fleet is not None and await self._lost_here(handle):
                    # Ended by this node's fence (its lease lapsed): not the server's failure.
                    break
                kind, message = failure
                message = handle.log.scrub(message)
                handle.last_error = message
                if handle.needs_login:
                    # Retrying cannot help: only `server login` can, and it starts the server.
                    await self._wait_for_login(handle, message)
                    break
                auto_disabled, failures = await self._record_failure(handle, kind, message)
                self._publish(Change.STATUS, handle.server_id)
                if auto_disabled:
                    self._publish(Change.SERVERS, handle.server_id)
                self._settle(handle, message)
                if auto_disabled:
                    break
                delay = self._backoff(failures)
                handle.next_retry_at = utcnow() + timedelta(seconds=delay)
                handle.log.note(f"{message}; retrying in {delay:.1f} s")
                handle.signal.clear()
                with suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await handle.signal.wait()
                handle.next_retry_at = None
        except asyncio.CancelledError:
            if handle.want_running:
                raise
            # A stop that could not wait for a start in progress; the stop is the outcome.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception as exc:
            _log_bug(handle, "supervising")
            handle.last_error = handle.log.scrub(f"internal error: {plain_error(exc)}")
        finally:
            handle.conn = None
            handle.next_retry_at = None
            self._settle(handle, handle.last_error or "stopped before it was running")
            if not auto_disabled and not handle.needs_login and not handle.refused:
                await self._mark_stopped(handle)
            handle.task = None

    async def _attempt(self, handle: _Handle) -> tuple[EventKind, str] | None:
        """One start and, if it works, the whole run. Returns why it ended, None for a stop."""
        handle.refused = False
        attempt = await self.state.begin_attempt(handle.server_id, handle.actor, self._refusal)
        if isinstance(attempt, str):
            handle.refused, handle.want_running = True, False
            handle.last_error = f"not started on this node: {attempt}"
            return None
        if attempt is None:
            handle.want_running = False
            return None
        spec, failures = attempt.spec, attempt.failures
        handle.name, handle.spec, handle.status = spec.name, spec, "starting"
        # Everything written about this run (stderr, notes, errors) loses this spec's secrets.
        handle.log.scrub = Scrubber.of(spec)
        FLEET_SECRETS.remember(spec.name, handle.log.scrub.values)  # for every other log line
        handle.fault, handle.tools_dirty, handle.needs_login = None, False, False
        handle.slow = handle.tools_failed = False
        handle.signal.clear()
        self._publish(Change.STATUS, handle.server_id)
        began = time.monotonic()
        pid: int | None = None
        ending: tuple[EventKind, str] | None = None
        auth = await unattended_auth(spec, self.state.db, handle.server_id)
        try:
            async with open_connection(
                spec,
                startup_timeout=attempt.startup_timeout_s,
                log=handle.log,
                on_tools_changed=lambda: self._tools_changed(handle),
                on_closed=handle.signal.set,
                launcher=attempt.launcher,
                max_message_bytes=self.settings.max_result_bytes,
                processes=self.processes,
                auth=auth,
            ) as conn:
                pid = conn.pid
                ending = await self._run(handle, conn, began, failures)
                if ending is not None and ending[0] == EventKind.HEALTH_FAILED and pid:
                    # It stopped answering: it will not read a closed stdin either.
                    await end_process_group(pid)
        except NeedsLogin as exc:
            handle.needs_login = True
            return EventKind.START_FAILED, exc.message
        except StartError as exc:
            return EventKind.START_FAILED, exc.message
        except Exception as exc:
            _log_bug(handle, "running")
            ending = (EventKind.CRASHED, f"internal error: {plain_error(exc)}")
        finally:
            if handle.conn is not None:
                self.connections.remove(handle.server_id, handle.conn)
            handle.conn = None
            handle.sampler.forget()
            handle.history_sampler.forget()
            await asyncio.shield(self._tools_unavailable(handle.server_id))
        if ending is not None and ending[0] == EventKind.CRASHED:
            stderr = handle.log.recent()
            if stderr:
                ending = (ending[0], f"{ending[1]}; last stderr: {stderr}")
        if ending is not None:
            handle.log.note(ending[1])
        return ending

    async def _run(
        self, handle: _Handle, conn: Connection, began: float, failures: int
    ) -> tuple[EventKind, str] | None:
        handle.conn = conn
        self.connections.add(handle.server_id, conn)
        if conn.pid is not None:
            # Primes CPU% so that the first reading is real.
            await asyncio.to_thread(_prime, conn.pid, handle.sampler, handle.history_sampler)
        tools = await self._discover(handle, conn, SYSTEM, quiet=True)
        handle.started_at = utcnow()
        handle.status = "degraded" if tools is None else "running"
        elapsed = (time.monotonic() - began) * 1000
        details = [f"{conn.server_name} {conn.server_version}".strip()]
        details.append(f"{len(tools)} tools" if tools is not None else "tools unknown")
        if conn.pid is not None:
            details.append(f"pid {conn.pid}")
        await self.state.started(
            handle.server_id,
            status=handle.status,
            at=handle.started_at,
            message=f"started in {elapsed:.0f} ms: {', '.join(details)}",
            actor=handle.actor,
            degraded=handle.last_error if tools is None else None,
        )
        self._publish(Change.STATUS, handle.server_id)
        if tools is not None:
            handle.last_error = None
        self._settle(handle, None)

        loop = asyncio.get_running_loop()
        stable_at = loop.time() + self.stable_after_s if failures else None
        while True:
            try:
                async with asyncio.timeout_at(stable_at):
                    await handle.signal.wait()
            except TimeoutError:
                stable_at = None
                await self.state.reset_failures(handle.server_id)
                continue
            handle.signal.clear()
            if not handle.want_running or self._closing:
                return None
            if conn.closed.is_set():
                what = (
                    "exited unexpectedly" if conn.spec.transport == "stdio" else "connection lost"
                )
                return EventKind.CRASHED, what
            if handle.fault is not None:
                return EventKind.HEALTH_FAILED, handle.fault
            if handle.tools_dirty:
                handle.tools_dirty = False
                await self._discover(handle, conn, SYSTEM)

    async def _wait_for_login(self, handle: _Handle, message: str) -> None:
        handle.status = "needs_login"
        handle.want_running = False
        handle.log.note(message)
        await self.state.needs_login(handle.server_id, message)
        self._publish(Change.STATUS, handle.server_id)
        self._settle(handle, message)

    def _tools_changed(self, handle: _Handle) -> None:
        handle.tools_dirty = True
        handle.signal.set()

    def _backoff(self, failures: int) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, failures - 1))
        # Jitter keeps a fleet that failed together from retrying in lockstep.
        return min(self.backoff_max_s, delay * random.uniform(0.8, 1.2))

    async def _stop_handle(self, handle: _Handle, actor: str, reason: str | None) -> None:
        task = handle.task
        if task is None:
            return
        handle.want_running = False
        handle.stop_actor, handle.stop_reason = actor, reason
        if handle.status == "starting" or handle.conn is None:
            # A start in progress has nothing to close gracefully; its child is still reaped.
            task.cancel()
        elif handle.status in UP_STATUSES:
            handle.status = "stopping"
            await self.state.stopping(handle.server_id)
            self._publish(Change.STATUS, handle.server_id)
        handle.signal.set()
        done, _pending = await asyncio.wait({task}, timeout=self.stop_timeout_s)
        if not done:
            logger.warning(
                "%s did not stop within %s s; killing it", handle.name, self.stop_timeout_s
            )
            pid = handle.pid
            task.cancel()
            if pid is not None:
                await end_process_group(pid, grace_s=0)
            await asyncio.wait({task}, timeout=self.stop_timeout_s)

    async def _mark_stopped(self, handle: _Handle) -> None:
        handle.status, handle.started_at = "stopped", None
        reason = handle.stop_reason
        message = f"stopped {handle.name}" + (f" ({reason})" if reason else "")
        try:
            if not await self.state.stopped(handle.server_id, message, handle.stop_actor):
                return
        except Exception:
            logger.exception("recording the stop of %s failed", handle.name)
        handle.log.note(message)
        self._publish(Change.STATUS, handle.server_id)

    async def _settle_stale(self, server_id: str, actor: str) -> None:
        await self.state.settle_stale(server_id, actor)
        self._publish(Change.STATUS, server_id)

    # ---- failures -------------------------------------------------------------------------

    async def _record_failure(
        self, handle: _Handle, kind: EventKind, message: str
    ) -> tuple[bool, int]:
        """Count a failure; at `max_failures` in a row the server is disabled. Returns
        (disabled, failures)."""
        handle.status = "error"
        outcome = await self.state.record_failure(handle.server_id, kind, message)
        if outcome is None:
            handle.want_running = False
            return True, 0
        failures, disabled_reason = outcome
        if disabled_reason is not None:
            handle.want_running = False
            handle.was_enabled = False
            handle.log.note(disabled_reason)
            return True, failures
        return False, failures

    async def _set_quality(
        self, handle: _Handle, conn: Connection, *, now: datetime | None, reset_failures: bool
    ) -> str:
        """Running or degraded, from the last probe and listing; an event when it changes."""
        wanted = "degraded" if handle.slow or handle.tools_failed else "running"
        if handle.conn is not conn or handle.status not in UP_STATUSES:
            return handle.status
        changed = wanted != handle.status
        handle.status = wanted
        event: tuple[EventKind, str] | None = None
        if changed and wanted == "degraded":
            why = (
                f"answered in {handle.last_latency_ms:.0f} ms"
                if handle.slow and handle.last_latency_ms is not None
                else f"tool listing failed: {handle.last_error}"
            )
            event = (EventKind.DEGRADED, f"degraded: {why}")
        elif changed:
            event = (EventKind.RECOVERED, "recovered")
        await self.state.health_checked(
            handle.server_id,
            at=now,
            reset_failures=reset_failures,
            status=wanted if changed else None,
            event=event,
        )
        if changed:
            self._publish(Change.STATUS, handle.server_id)
        return wanted

    # ---- tools ----------------------------------------------------------------------------

    async def _discover(
        self, handle: _Handle, conn: Connection, actor: str, *, quiet: bool = False
    ) -> list[types.Tool] | None:
        """List the tools and store them. None (and the server degraded) when listing fails."""
        async with handle.discovery:
            try:
                tools = await conn.list_tools(self.settings.health_check_timeout_s)
            except TimeoutError:
                error = (
                    f"tools/list timed out after {seconds(self.settings.health_check_timeout_s)} s"
                )
            except MCPError as exc:
                error = f"tools/list failed: {exc.message}"
            except Exception as exc:
                logger.warning("listing the tools of %s failed", handle.name, exc_info=True)
                error = f"tools/list failed: {plain_error(exc)}"
            else:
                await self.catalogue.store(handle.server_id, tools, actor)
                if handle.tools_failed:
                    handle.tools_failed = False
                    if not quiet:
                        await self._set_quality(handle, conn, now=None, reset_failures=False)
                return tools
            handle.last_error = handle.log.scrub(error)
            handle.log.note(error)
            handle.tools_failed = True
            if not quiet:
                await self._set_quality(handle, conn, now=None, reset_failures=False)
            return None

    async def _tools_unavailable(self, server_id: str) -> None:
        try:
            if self.state.node is not None:
                try:
                    row = await self.state.row(server_id)
                except NotFound:
                    return
                if not self.state.owns(row):
                    return  # another node runs it now: its tools are available there
            await self.catalogue.mark_unavailable(server_id)
        except Exception:
            logger.exception("marking the tools of %s unavailable failed", server_id)
            self._publish(Change.TOOLS, server_id)

    # ---- placement and leases (app.runtime.fleet) -------------------------------------------

    def _pinned_here(self, server: KnownServer | ToolServer) -> bool:
        """Whether this node runs the server whatever the leases say."""
        return self.fleet is None or not self.fleet.shared or server.placement == self.fleet.name

    def _refusal(self, server: KnownServer | ToolServer) -> str | None:
        if self.fleet is None:
            return None
        return self.fleet.refusal(Placed(server.id, server.name, server.placement))

    async def _claim_to_start(self, row: ToolServer) -> None:
        """An `any` server asked to start here: this node takes its lease if nobody holds it."""
        if self.fleet is not None and row.placement == ANY_NODE and self._refusal(row):
            await self.fleet.claim(Placed(row.id, row.name, row.placement))

    def _refuse_elsewhere(self, row: ToolServer) -> None:
        refused = self._refusal(row)
        if refused is not None:
            raise Conflict(f"{row.name} is not run by this node: {refused}")

    async def _lost_here(self, handle: _Handle) -> bool:
        try:
            row = await self._row(handle.server_id)
        except NotFound:
            return False
        refused = self._refusal(row)
        if refused is None:
            return False
        handle.want_running = False
        handle.last_error = f"stopped on this node: {refused}"
        return True

    async def _leases_changed(self, lost: frozenset[str], gained: frozenset[str]) -> None:
        """Stop what this node no longer holds; start what it claimed (auto-start ones)."""
        lapsed = self.fleet is not None and not self.fleet.lease_valid()
        servers = {server.id: server for server in await self.state.known()}
        for server_id in lost:
            handle = self._handles.get(server_id)
            if handle is None or handle.task is None:
                continue
            reason = "its lease lapsed" if lapsed else "its lease was given up"
            self._spawn(self._stop_lost(handle, reason), f"stop {handle.name}")
        for server_id in gained:
            server = servers.get(server_id)
            if server is not None and server.enabled and server.auto_start:
                self._handle_for(server.id, server.name).was_enabled = True
                start = self._quiet(self.start(server.id, actor=SYSTEM))
                self._spawn(start, f"start {server.name}")

    async def _stop_lost(self, handle: _Handle, reason: str) -> None:
        async with handle.control:
            await self._stop_handle(handle, SYSTEM, reason)

    async def reconcile(self) -> None:
        """Catch up with what other nodes changed: start the servers newly placed on this node
        (auto-start, enabled), stop those this node may no longer run."""
        if self._closing:
            return
        known = await self.state.known()
        present = {server.id for server in known}
        for server in known:
            handle = self._handles.get(server.id)
            if handle is not None and handle.task is not None:
                if not server.enabled or self._refusal(server) is not None:
                    await self.intent_changed(server.id)
            elif handle is None and self._pinned_here(server):
                await self.intent_changed(server.id)
        for server_id in [sid for sid in self._handles if sid not in present]:
            await self.forget(server_id)

    # ---- helpers --------------------------------------------------------------------------

    async def _row(self, server_id: str) -> ToolServer:
        return await self.state.row(server_id)

    def _publish(self, change: Change, server_id: str | None) -> None:
        self.changes.publish(change, server_id)

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _quiet(work: Any) -> None:
        """A background start: its failure is already recorded, nobody waits for it."""
        with suppress(StartFailed, Conflict, NotFound, NotRunning):
            await work

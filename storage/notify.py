"""PostgreSQL's LISTEN/NOTIFY on one channel: a connection of its own that listens, and sends.

Pooled connections come and go; a LISTEN lives as long as its session, so this channel keeps a
dedicated asyncpg connection, opened from the engine's own connection arguments. When that
connection is lost (a server restart, `pg_terminate_backend`, a network break) it is opened
again with a growing pause, and `on_reconnect` is told: notifications sent meanwhile were
missed. Messages handed to `send` while the connection is down wait, up to `MAX_PENDING`, and go
out once it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

# PostgreSQL refuses a payload of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7999
MAX_PENDING = 1000
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0
# A connection that is silently gone (a dead network, no FIN) is found out by a query this
# often; a terminated backend is noticed at once by its closing socket.
CHECK_EVERY_S = 10.0
CHECK_TIMEOUT_S = 5.0
# A process that ends right after a change (a CLI run) still tells the others, unless the
# database takes longer than this to take the notice.
FLUSH_S = 2.0


class PayloadTooLarge(ValueError):
    pass


class NotifyChannel:
    """`on_message(payload)` for every notification on `channel`, this session's own included."""

    def __init__(
        self,
        engine: AsyncEngine,
        channel: str,
        on_message: Callable[[str], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        application_name: str | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        _args, self._connect_kwargs = engine.dialect.create_connect_args(engine.url)
        if application_name is not None:
            # pg_stat_activity tells this connection apart from the pool's.
            settings = dict(self._connect_kwargs.get("server_settings") or {})
            settings["application_name"] = application_name[:63]
            self._connect_kwargs["server_settings"] = settings
        self.channel = channel
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._pending: deque[str] = deque(maxlen=MAX_PENDING)
        self._wakeup = asyncio.Event()
        # Set while nothing waits to be sent.
        self._drained = asyncio.Event()
        self._drained.set()
        self._lost = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        # How many times the connection was opened again after a loss.
        self.reconnects = 0

    async def start(self) -> None:
        """Listening once this returns; the first connection's failure is raised here."""
        await self._open()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop listening, once what is pending went out (or FLUSH_S passed)."""
        if self._task is not None and not self._task.done():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), FLUSH_S)
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    def send(self, payload: str) -> None:
        """Queue a notification; sent in order, from this loop, as soon as connected."""
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(f"a notification of {len(payload.encode())} bytes")
        self._pending.append(payload)
        self._drained.clear()
        self._wakeup.set()

    async def backend_pid(self) -> int | None:
        """The server process of the listening connection (for a test to terminate it)."""
        connection = self._connection
        return None if connection is None else connection.get_server_pid()

    # ---- the connection ---------------------------------------------------------------------

    async def _open(self) -> None:
        # Imported here: a process on SQLite never loads the driver.
        import asyncpg

        connection: asyncpg.Connection = await asyncpg.connect(**self._connect_kwargs)
        try:
            connection.add_termination_listener(self._terminated)
            await connection.add_listener(self.channel, self._notified)
        except BaseException:
            await _close_quietly(connection)
            raise
        self._connection = connection
        self._lost.clear()
        self.connected.set()

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        self.connected.clear()
        if connection is not None:
            await _close_quietly(connection)

    def _terminated(self, _connection: Any) -> None:
        self._lost.set()
        self._wakeup.set()

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._on_message(payload)
        except Exception:  # one bad message must not stop the listening
            log.exception("a notification on %s could not be handled", self.channel)

    async def _run(self) -> None:
        while True:
            try:
                await self._serve()
            except Exception as exc:  # whatever broke the connection, a new one is opened
                log.warning("the %s listener lost its connection: %s", self.channel, exc)
            await self._close()
            await self._reconnect()

    async def _serve(self) -> None:
        """Send what is pending and check the connection, until it is lost."""
        while not self._lost.is_set():
            while self._pending:
                connection = self._connection
                assert connection is not None
                await connection.execute("SELECT pg_notify($1, $2)", self.channel, self._pending[0])
                self._pending.popleft()
            self._drained.set()
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), CHECK_EVERY_S)
            except TimeoutError:
                connection = self._connection
                assert connection is not None
                await connection.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            await asyncio.sleep(delay)
            try:
                await self._open()
            except Exception as exc:  # the server is still away: try again later
                log.warning("the %s listener cannot reconnect yet: %s", self.channel, exc)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            self.reconnects += 1
            log.info("the %s listener is connected again", self.channel)
            if self._on_reconnect is not None:
                try:
                    self._on_reconnect()
                except Exception:
                    log.exception("the %s listener's reconnect handler failed", self.channel)
            return


async def _close_quietly(connection: asyncpg.Connection) -> None:
    with suppress(Exception):
        await asyncio.wait_for(connection.close(), CHECK_TIMEOUT_S)
    if not connection.is_closed():
        connection.terminate()

"""One change bus for every process on one PostgreSQL: changes relayed with LISTEN/NOTIFY.

Each process sends the changes it makes itself on the `tooldeck_changes` channel, marked with
its own origin, and publishes on its local bus the changes other processes send; so a tool
disabled through one node's API leaves every node's gateway listing, and a token revoked on
one is forgotten by all. A change heard from elsewhere is not sent again. After the listening
connection was lost and found again, every kind of change is published for all servers: what
was sent meanwhile is gone, so everything is looked at afresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable

from app.core.changes import Change, ChangeBus
from storage.db import Database
from storage.notify import NotifyChannel

log = logging.getLogger(__name__)

CHANNEL = "tooldeck_changes"
# The listening connection's application_name in pg_stat_activity: this prefix, then the origin
# (which starts with the process id).
APPLICATION_PREFIX = "tooldeck-changes-"


def new_origin() -> str:
    # The pid says which process to a person reading the traffic; the random part keeps two
    # hosts' equal pids apart.
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def encode(origin: str, change: Change, server_id: str | None) -> str:
    return json.dumps({"origin": origin, "change": change.value, "server": server_id})


def decode(payload: str) -> tuple[str, Change, str | None]:
    """Origin, change and server of a notification; ValueError when it is none of ours."""
    try:
        message = json.loads(payload)
        server = message.get("server")
        if server is not None and not isinstance(server, str):
            raise ValueError(f"server {server!r}")
        return str(message["origin"]), Change(message["change"]), server
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a change notice: {payload[:200]!r}") from exc


class ChangeRelay:
    """Relays `bus` to and from the other processes on `db` (PostgreSQL only)."""

    def __init__(self, bus: ChangeBus, db: Database, *, origin: str | None = None) -> None:
        self.bus = bus
        self.origin = origin or new_origin()
        self.channel = NotifyChannel(
            db.engine,
            CHANNEL,
            self._heard,
            on_reconnect=self._refresh_everything,
            application_name=f"{APPLICATION_PREFIX}{self.origin}",
        )
        self._relaying = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self.channel.start()
        self._unsubscribe = self.bus.subscribe(self._local_change)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.channel.stop()

    def _local_change(self, change: Change, server_id: str | None) -> None:
        if self._relaying:  # heard from another process: it has told everyone already
            return
        payload = encode(self.origin, change, server_id)
        if threading.get_ident() == self._loop_thread:
            self.channel.send(payload)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.channel.send, payload)

    def _heard(self, payload: str) -> None:
        try:
            origin, change, server_id = decode(payload)
        except ValueError:
            log.warning("ignored a notification on %s: %s", CHANNEL, payload[:200])
            return
        if origin != self.origin:
            self._publish_here(change, server_id)

    def _refresh_everything(self) -> None:
        for change in Change:
            self._publish_here(change, None)

    def _publish_here(self, change: Change, server_id: str | None) -> None:
        self._relaying = True
        try:
            self.bus.publish(change, server_id)
        finally:
            self._relaying = False

"""A tiny in-process publish/subscribe for "something changed" notices.

The facade and the supervisor publish; the gateway (tools/list_changed to MCP clients) and the
dashboard (refresh now instead of at the next tick) subscribe. Subscribers are plain callables
and must not block: they typically set a flag or schedule a task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger(__name__)


class Change(StrEnum):
    SERVERS = "servers"  # a server was created, changed, deleted, enabled or disabled
    STATUS = "status"  # the supervisor saw a server's status change
    TOOLS = "tools"  # the set of tools or their enabled/available flags changed
    PROFILES = "profiles"  # a gateway profile was created, changed or deleted
    TOKENS = "tokens"  # an API token was added or revoked


Listener = Callable[[Change, str | None], None]


class ChangeBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def publish(self, change: Change, server_id: str | None = None) -> None:
        for listener in list(self._listeners):
            try:
                listener(change, server_id)
            except Exception:  # a broken subscriber must not break the publisher
                log.exception("change listener failed")

"""Where the operations read the client sessions of the gateway running in this process.

The gateway registers itself when it starts and leaves when it stops; the list is built only
when someone asks, so the call path pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.clients import GatewaySession

SessionSource = Callable[[], list[GatewaySession]]


class GatewaySessions:
    def __init__(self) -> None:
        self._sources: list[SessionSource] = []

    @property
    def running(self) -> bool:
        return bool(self._sources)

    def register(self, source: SessionSource) -> Callable[[], None]:
        """Add a gateway's sessions; returns what removes them."""
        self._sources.append(source)

        def unregister() -> None:
            if source in self._sources:
                self._sources.remove(source)

        return unregister

    def snapshot(self) -> list[GatewaySession]:
        """Every session connected now, oldest first."""
        found = [session for source in list(self._sources) for session in source()]
        return sorted(found, key=lambda session: session.since)

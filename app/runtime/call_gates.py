"""Per-server concurrency gates on tool calls.

The gate admits `max_concurrent_calls` calls at a time; up to `max_queued_calls` more wait their
turn (within the call's own timeout); anything beyond is refused at once with `Busy`, because a
queue without a bound turns an overloaded server into a pile of timed-out agents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from app.core.errors import Busy
from storage.models import ServerLimits


@dataclass(eq=False)
class _Gate:
    limit: int
    queue_max: int
    semaphore: asyncio.Semaphore
    waiting: int = 0


class CallGates:
    """The concurrency gates of every server with a call limit."""

    def __init__(self) -> None:
        self._gates: dict[str, _Gate] = {}

    def configure(self, server_id: str, limit: int | None, queue_max: int) -> None:
        if limit is None:
            self._gates.pop(server_id, None)
            return
        current = self._gates.get(server_id)
        if current is not None and (current.limit, current.queue_max) == (limit, queue_max):
            return
        # Calls admitted by the old gate release into it; new calls meet the new limit.
        self._gates[server_id] = _Gate(limit, queue_max, asyncio.Semaphore(limit))

    def load(self, rows: list[ServerLimits]) -> None:
        wanted = {row.server_id for row in rows if row.max_concurrent_calls}
        for server_id in list(self._gates):
            if server_id not in wanted:
                self._gates.pop(server_id, None)
        for row in rows:
            self.configure(row.server_id, row.max_concurrent_calls, row.max_queued_calls)

    def in_use(self, server_id: str) -> tuple[int, int]:
        """(calls running, calls queued) through the gate."""
        gate = self._gates.get(server_id)
        if gate is None:
            return 0, 0
        return gate.limit - gate.semaphore._value, gate.waiting

    @asynccontextmanager
    async def slot(self, server_id: str, name: str) -> AsyncIterator[None]:
        gate = self._gates.get(server_id)
        if gate is None:
            yield
            return
        if gate.semaphore.locked():
            if gate.waiting >= gate.queue_max:
                raise Busy(
                    f"{name} is busy: {gate.limit} calls running and {gate.waiting} queued "
                    f"(its limits); try again later"
                )
            gate.waiting += 1
            try:
                await gate.semaphore.acquire()
            finally:
                gate.waiting -= 1
        else:
            await gate.semaphore.acquire()
        try:
            yield
        finally:
            gate.semaphore.release()

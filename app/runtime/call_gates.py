"""Per-server concurrency gates on tool calls.

The gate admits `max_concurrent_calls` calls at a time; up to `max_queued_calls` more wait their
turn (within the call's own timeout); anything beyond is refused at once with `Busy`, because a
queue without a bound turns an overloaded server into a pile of timed-out agents.

Two ways in: `slot()` for an awaiting caller (the facade's call path), and `admit()`/`release()`
for the gateway's router, whose call path never awaits when a call may go at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from app.core.errors import Busy
from storage.models import ServerLimits


@dataclass(eq=False)
class _Gate:
    limit: int
    queue_max: int
    running: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)

    def release(self) -> None:
        # The freed place goes straight to the first waiter still waiting.
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1


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
        self._gates[server_id] = _Gate(limit, queue_max)

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
        return gate.running, sum(1 for waiter in gate.waiters if not waiter.done())

    def admit(self, server_id: str, name: str) -> tuple[object, asyncio.Future[None] | None]:
        """Take a place: (a token for `release`, None) when the call may go now, (token, a
        future to await) when it must queue. Raises Busy when the queue is full too."""
        gate = self._gates.get(server_id)
        if gate is None:
            return None, None
        if gate.running < gate.limit:
            gate.running += 1
            return gate, None
        queued = self.in_use(server_id)[1]
        if queued >= gate.queue_max:
            raise Busy(
                f"{name} is busy: {gate.limit} calls running and {queued} queued "
                f"(its limits); try again later"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gate.waiters.append(waiter)
        return gate, waiter

    @staticmethod
    def release(token: object) -> None:
        """Give back a place taken by `admit` (a queued caller that gave up releases too)."""
        if isinstance(token, _Gate):
            token.release()

    @staticmethod
    def abandon(token: object, waiter: asyncio.Future[None]) -> None:
        """A queued caller gave up before its turn: its place, if it got one, is given back."""
        if waiter.done() and not waiter.cancelled():
            CallGates.release(token)
        else:
            waiter.cancel()

    @asynccontextmanager
    async def slot(self, server_id: str, name: str) -> AsyncIterator[None]:
        token, waiter = self.admit(server_id, name)
        if waiter is not None:
            try:
                await waiter
            except BaseException:
                self.abandon(token, waiter)
                raise
        try:
            yield
        finally:
            self.release(token)

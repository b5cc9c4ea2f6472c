"""The dashboard's reader thread: reads run on its loop, and none is left pending when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.ops.read_thread import ReadThread


class Replica:
    def __init__(self) -> None:
        self.finished: list[str] = []

    async def list_servers(self) -> list[str]:
        return ["calculator"]

    async def straggler(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            self.finished.append("straggler")


async def test_a_read_arriving_while_the_reader_closes_is_finished_not_left_pending() -> None:
    replica = Replica()
    late: list[asyncio.Task[Any]] = []

    @asynccontextmanager
    async def opened() -> AsyncIterator[Replica]:
        try:
            yield replica
        finally:
            # What a refresh asked for at that very moment: a task the closing sweep missed.
            late.append(asyncio.ensure_future(replica.straggler()))

    reader = ReadThread(opened)
    await asyncio.to_thread(reader.start)
    assert await reader.list_servers() == ["calculator"]  # type: ignore[attr-defined]
    await asyncio.to_thread(reader.stop)
    assert replica.finished == ["straggler"] and late[0].cancelled()
    with pytest.raises(RuntimeError, match="not running"):
        await reader.list_servers()  # type: ignore[attr-defined]

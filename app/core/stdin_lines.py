"""The process's stdin as lines whose wait can be cancelled, for stdio MCP servers of our own.

The SDK's stdio transport reads stdin on an AnyIO worker thread, and a task waiting on that
thread cannot be cancelled until a line arrives: a stop signal to `tooldeck gateway --stdio`
whose client sends nothing waited for ever, with its servers running. Here a daemon thread of
our own reads the lines and hands them to the loop, so waiting for the next one is an ordinary
cancellable wait; the thread, blocked in its read, ends with the process.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

# Lines read ahead of the reader: a client that floods stdin waits here, as it would on a pipe.
READ_AHEAD_LINES = 64


@asynccontextmanager
async def cancellable_stdin() -> AsyncIterator[AsyncIterator[str]]:
    """Yield stdin's lines (UTF-8, bad bytes replaced) until it ends.

    While inside, fd 0 points at the null device, as the SDK's transport does, so that the
    servers this process starts read EOF there instead of stealing the client's messages.
    """
    loop = asyncio.get_running_loop()
    wire = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    queue: asyncio.Queue[str | None] = asyncio.Queue(READ_AHEAD_LINES)

    def hand_over(line: str | None) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(line), loop).result()
        except (RuntimeError, asyncio.CancelledError):  # the loop is gone: nobody reads
            return False
        return True

    def read() -> None:
        with open(wire, encoding="utf-8", errors="replace", closefd=False) as stream:
            for line in stream:
                if not hand_over(line):
                    return
        hand_over(None)

    threading.Thread(target=read, name="tooldeck-stdin", daemon=True).start()

    async def lines() -> AsyncIterator[str]:
        while (line := await queue.get()) is not None:
            yield line

    try:
        yield lines()
    finally:
        with suppress(OSError):
            os.dup2(wire, 0)

"""The read operations of a second facade, on its own event loop in its own thread.

Async is not enough to keep a dashboard answering keys: turning a thousand servers into models
and merging latency histograms is CPU work, and on the app's loop it would hold every key press
behind it. Read here, that work runs on another thread; the interpreter switches threads every
few milliseconds, so input stays prompt while a big read is under way.

Only reads go here (`ReadOperations`: lists, events, analytics). Writes and everything that
touches the supervisor stay on the app's facade, whose runtime lives on the app's loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

from app.ops.protocol import ReadOperations, operation_names, shaped_as

logger = logging.getLogger(__name__)
STOP_TIMEOUT_S = 5.0


class ReadThread(ReadOperations):
    """`ReadOperations` answered by the facade `open_replica` opens, on a thread of its own.

    Each operation waits for its answer on the caller's loop; cancelling the caller cancels
    the read.
    """

    def __init__(self, open_replica: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self._open_replica = open_replica
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replica: Any = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="tooldeck-reader", daemon=True)

    def start(self) -> None:
        """Start the thread and open the replica there (blocking: call it off the loop)."""
        self._thread.start()
        self._ready.wait(timeout=STOP_TIMEOUT_S)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Abandon the reads under way, close the replica and end the thread (blocking)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed meanwhile: nothing left to stop
                pass
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_TIMEOUT_S)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc  # handed to start(), which raises it in the caller
            else:  # closing must not fail the caller's shutdown
                logger.warning("the reader did not close cleanly", exc_info=True)
        finally:
            self._ready.set()
            self._closing = True
            _finish_stragglers(loop)
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        async with self._open_replica() as replica:
            self._replica = replica
            self._ready.set()
            try:
                await self._stopping.wait()
            finally:
                self._closing = True  # from here no new read is taken
                this = asyncio.current_task()
                pending = [task for task in asyncio.all_tasks() if task is not this]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _on_thread(self, read: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
        loop, replica = self._loop, self._replica
        if loop is None or replica is None or self._closing or not loop.is_running():
            raise RuntimeError("the reader is not running")
        future = asyncio.run_coroutine_threadsafe(read(replica), loop)
        return await asyncio.wrap_future(future)


def _finish_stragglers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and finish the reads that reached the loop while it was closing (a refresh asked
    for just before `_closing` was seen). Left pending, each was destroyed at exit, and its
    session's close ran on no loop, printing tracebacks over the terminal given back."""
    while pending := asyncio.all_tasks(loop):
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _forwarded(name: str) -> Callable[..., Awaitable[Any]]:
    async def read(self: ReadThread, *args: Any, **kwargs: Any) -> Any:
        return await self._on_thread(lambda replica: getattr(replica, name)(*args, **kwargs))

    return shaped_as(ReadOperations, name, read)


for _name in operation_names(ReadOperations):
    setattr(ReadThread, _name, _forwarded(_name))

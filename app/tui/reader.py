"""A second facade, on its own event loop in its own thread, for the dashboard's heavy reads.

Async is not enough to keep the dashboard answering keys: turning a thousand servers into
models and merging latency histograms is CPU work, and on the app's loop it would hold every
key press behind it. Read here, that work runs on another thread; the interpreter switches
threads every few milliseconds, so input stays prompt while a big read is under way.

Only reads go here (lists, events, analytics). Writes and everything that touches the
supervisor stay on the app's facade, whose runtime lives on the app's loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from app.ops.facade import Operations
from storage.db import Database

logger = logging.getLogger(__name__)
STOP_TIMEOUT_S = 5.0


class ReadThread:
    def __init__(self, make_ops: Callable[[], Awaitable[Operations]]) -> None:
        self._make_ops = make_ops
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ops: Operations | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tooldeck-reader", daemon=True)

    @classmethod
    def for_facade(cls, ops: Any) -> ReadThread | None:
        """A reader beside an in-process facade; None for one that is not (a remote daemon's
        facade is already off this process, its reads are I/O)."""
        if type(ops) is not Operations:
            return None
        url, settings = ops.db.url, ops.settings

        async def make() -> Operations:
            return Operations(Database(url), settings)

        return cls(make)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=STOP_TIMEOUT_S)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._ops = loop.run_until_complete(self._make_ops())
        except BaseException as exc:  # handed to start(), which raises it in the app
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                # Reads still under way when the app quits are abandoned, not left dangling.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(self._ops.db.dispose())
            except Exception:  # closing must not fail the app's shutdown
                logger.warning("the dashboard's reader did not close cleanly", exc_info=True)
            loop.close()

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run `ops.<method>(...)` on the reader; cancelling the caller cancels the read."""
        loop, ops = self._loop, self._ops
        if loop is None or ops is None or not loop.is_running():
            raise RuntimeError("the dashboard's reader is not running")
        future = asyncio.run_coroutine_threadsafe(getattr(ops, method)(*args, **kwargs), loop)
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_TIMEOUT_S)

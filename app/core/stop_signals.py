"""Stopping on a signal, the same way in every face.

SIGTERM (systemd, `kill`, an MCP client closing its server), SIGINT (Ctrl+C) and SIGHUP (the
terminal or the SSH session went away) all mean "stop cleanly": stop the servers this process
runs, flush the usage it recorded, leave every status true. Without a handler SIGTERM and SIGHUP
end the process where it stands, leaving statuses saying `running`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextmanager
def on_stop_signals(callback: Callable[[signal.Signals], None]) -> Iterator[None]:
    """While inside, each stop signal calls `callback(signal)` on the running loop.

    Installs nothing where the loop cannot take signals (not the main thread, not Unix).
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, callback, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            with suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


@dataclass(frozen=True)
class Stopped:
    """`until_stopped`'s answer when a signal cut the work short."""

    signal: signal.Signals

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by this signal: 128 + its number."""
        return 128 + int(self.signal)


async def until_stopped(work: Awaitable[T]) -> T | Stopped:
    """Run `work` in a task of its own; the first stop signal cancels it, so that its context
    managers close whatever it opened, and later ones are ignored (the stop is under way)."""
    task = asyncio.ensure_future(work)
    received: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        if not received:
            received.append(signum)
            task.cancel()

    with on_stop_signals(stop):
        try:
            return await task
        except asyncio.CancelledError:
            if received and task.done():
                return Stopped(received[0])
            raise

"""The fence of a node: a small process that kills the node's leased servers when the node
stops renewing their leases in time.

A node paused with SIGSTOP (or stuck in a long GC, or swapped out) cannot stop anything itself,
while its servers' processes run on; once its leases expire another node starts the same
servers. This process is not paused with it: the node tells it, at each renewal, until when
its leases are safe (a CLOCK_MONOTONIC time, shared by every process of the host) and which
servers they cover. Past that time with no newer word, it SIGKILLs those servers' process
groups, well before the leases expire in the database. When the node dies its pipe closes and
the same happens. The node, once resumed, finds its leases stale and stops what it lost.

Run as `python -m app.runtime.fence DATA_DIR`; reads JSON lines on stdin:
`{"until": <monotonic seconds>, "servers": [<name>, ...]}`.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from pathlib import Path

from app.runtime.process_registry import ProcessRegistry


class FenceState:
    def __init__(self, registry: ProcessRegistry) -> None:
        self.registry = registry
        self.until: float | None = None
        self.servers: set[str] = set()

    def hear(self, line: str) -> None:
        try:
            message = json.loads(line)
            until = float(message["until"])
            servers = {str(name) for name in message["servers"]}
        except (ValueError, KeyError, TypeError):
            return
        self.until, self.servers = until, servers

    def wait_s(self) -> float | None:
        return None if self.until is None else max(0.0, self.until - time.monotonic())

    def enforce(self) -> None:
        """Past the deadline: end every leased server, then wait for the next word."""
        if self.until is not None and time.monotonic() >= self.until:
            self.registry.kill_groups_of(self.servers)
            self.until = None


def run(data_dir: Path) -> None:
    state = FenceState(ProcessRegistry(data_dir))
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        ready, _, _ = select.select([stdin], [], [], state.wait_s())
        if not ready:
            state.enforce()
            continue
        chunk = os.read(stdin, 65536)
        if not chunk:
            # The node is gone: nothing renews these leases any more.
            state.until = time.monotonic()
            state.enforce()
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            state.hear(line.decode(errors="replace"))
        state.enforce()


if __name__ == "__main__":
    run(Path(sys.argv[1]))

"""Memory and CPU of a server's whole process tree, from psutil."""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil


@dataclass(eq=False)
class ProcessSampler:
    """Samples one process tree; keeps its psutil objects, because `cpu_percent` measures the
    time since the previous call on the same object."""

    processes: dict[int, psutil.Process] = field(default_factory=dict)

    def sample(self, pid: int | None) -> tuple[int | None, float | None, int]:
        """(RSS bytes, CPU%, process count) of `pid` and its descendants.

        Blocking (it reads /proc): call it off the event loop. The first call primes CPU%.
        """
        if pid is None:
            return None, None, 0
        try:
            root = self.processes.get(pid) or psutil.Process(pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None, None, 0
        rss = 0
        cpu = 0.0
        seen: dict[int, psutil.Process] = {}
        for member in members:
            process = self.processes.get(member.pid, member)
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    cpu += process.cpu_percent(None)
            except psutil.Error:
                continue
            seen[member.pid] = process
        self.processes = seen
        return rss, round(cpu, 1), len(seen)

    def forget(self) -> None:
        self.processes.clear()

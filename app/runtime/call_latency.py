"""Per-tool call durations since this process started, at fixed bucket bounds.

This is what Prometheus scrapes as `tooldeck_tool_call_duration_seconds`: histogram buckets are
counters, so they come from the call path itself (reset when the process restarts, which
Prometheus expects), not from a window over the stored usage, which could go down.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

# Upper bounds in milliseconds: from a local stdio call (~2 ms) to a slow remote tool (a minute).
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
)  # fmt: skip


@dataclass
class ToolLatency:
    server_name: str | None
    tool_name: str
    bounds_ms: Sequence[float]
    counts: list[int]  # per bucket, the last one for calls above every bound
    sum_ms: float = 0.0
    count: int = 0

    @property
    def cumulative_counts(self) -> list[int]:
        """Counts at each bound, as Prometheus `le` buckets want them (without +Inf)."""
        running, out = 0, []
        for bucket in self.counts[: len(self.bounds_ms)]:
            running += bucket
            out.append(running)
        return out


@dataclass
class CallLatency:
    bounds_ms: tuple[float, ...] = LATENCY_BOUNDS_MS
    _tools: dict[tuple[str | None, str], ToolLatency] = field(default_factory=dict)

    def observe(self, server_name: str | None, tool_name: str, duration_ms: float) -> None:
        key = (server_name, tool_name)
        tool = self._tools.get(key)
        if tool is None:
            tool = ToolLatency(
                server_name, tool_name, self.bounds_ms, [0] * (len(self.bounds_ms) + 1)
            )
            self._tools[key] = tool
        tool.counts[bisect_left(self.bounds_ms, duration_ms)] += 1
        tool.sum_ms += duration_ms
        tool.count += 1

    def snapshot(self) -> list[ToolLatency]:
        return sorted(self._tools.values(), key=lambda t: (t.server_name or "", t.tool_name))

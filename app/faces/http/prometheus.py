"""The Prometheus text exposition format (0.0.4) of the fleet, read through the facade."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from app.core.schemas import SERVER_STATUSES, ServerToolResponse, ToolServerResponse
from app.ops.protocol import Operations

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UP_STATUSES = frozenset({"running", "degraded"})
QUANTILES = (("0.5", "p50_response_time_ms"), ("0.95", "p95_response_time_ms"),
             ("0.99", "p99_response_time_ms"))  # fmt: skip
QUANTILE_PERIOD = "1h"
PROCESS_FAMILIES = (
    (
        "tooldeck_server_memory_rss_bytes",
        "Resident memory of a running local server's process tree, at its latest sample.",
        "rss_bytes",
    ),
    (
        "tooldeck_server_cpu_percent",
        "CPU of a running local server's process tree (100 = one core), at its latest sample.",
        "cpu_percent",
    ),
)


class LatencyHistogram(Protocol):
    """One tool's calls so far: cumulative counts at each bound (Prometheus `le`)."""

    server_name: str | None
    tool_name: str
    bounds_ms: Sequence[float]
    cumulative_counts: Sequence[int]
    sum_ms: float
    count: int


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return f"{{{inner}}}"


def _number(value: float) -> str:
    number = float(value)
    if number == float("inf"):
        return "+Inf"
    return str(int(number)) if number.is_integer() else repr(number)


class Exposition:
    """Collects families and renders them; each family is written once, with HELP and TYPE."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram_family(
        self, name: str, help_text: str, histograms: Iterable[LatencyHistogram]
    ) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} histogram")
        for item in histograms:
            labels = {"server": item.server_name or "", "tool": item.tool_name}
            for bound, count in zip(item.bounds_ms, item.cumulative_counts, strict=True):
                le = {**labels, "le": _number(bound / 1000)}
                self._lines.append(f"{name}_bucket{_labels(le)} {count}")
            self._lines.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {item.count}")
            self._lines.append(f"{name}_sum{_labels(labels)} {_number(item.sum_ms / 1000)}")
            self._lines.append(f"{name}_count{_labels(labels)} {item.count}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


async def render_metrics(ops: Operations) -> str:
    servers = await ops.list_servers()
    tools: list[tuple[ToolServerResponse, ServerToolResponse]] = []
    for server in servers:
        tools.extend((server, tool) for tool in await ops.list_tools(server.id))

    out = Exposition()
    out.family(
        "tooldeck_servers",
        "gauge",
        "Servers known to Tooldeck.",
        [({}, len(servers))],
    )
    out.family(
        "tooldeck_server_up",
        "gauge",
        "1 when the server is running or degraded, else 0.",
        (({"server": s.name}, 1 if s.status in UP_STATUSES else 0) for s in servers),
    )
    out.family(
        "tooldeck_server_status",
        "gauge",
        "The server's status: 1 on the series of its current status.",
        (
            ({"server": s.name, "status": status}, 1 if s.status == status else 0)
            for s in servers
            for status in SERVER_STATUSES
        ),
    )
    out.family(
        "tooldeck_server_enabled",
        "gauge",
        "1 when the server is enabled (a person's intent), else 0.",
        (({"server": s.name}, 1 if s.enabled else 0) for s in servers),
    )
    out.family(
        "tooldeck_server_consecutive_failures",
        "gauge",
        "Failed starts, exits and health probes in a row.",
        (({"server": s.name}, s.consecutive_failures) for s in servers),
    )
    out.family(
        "tooldeck_server_tools",
        "gauge",
        "Tools the server offers.",
        (({"server": s.name}, s.tools_count) for s in servers),
    )
    # The `resources` job's latest sample (not a fresh one: measuring a thousand process trees
    # on every scrape would cost more than the page, and would reset the CPU% intervals).
    processes = await ops.process_samples()
    for name, help_text, attribute in PROCESS_FAMILIES:
        out.family(
            name,
            "gauge",
            help_text,
            (
                ({"server": p.server_name or ""}, value)
                for p in processes
                if (value := getattr(p, attribute)) is not None
            ),
        )
    out.family(
        "tooldeck_tool_available",
        "gauge",
        "1 when the tool can be called now (its server runs and lists it), else 0.",
        (({"server": s.name, "tool": t.name}, 1 if t.is_available else 0) for s, t in tools),
    )
    out.family(
        "tooldeck_tool_calls_total",
        "counter",
        "Calls the tool answered (ok or error), from every source.",
        (({"server": s.name, "tool": t.name}, t.total_calls) for s, t in tools),
    )
    out.family(
        "tooldeck_tool_errors_total",
        "counter",
        "Answered calls of the tool that failed: its own errors, timeouts, lost connections.",
        (({"server": s.name, "tool": t.name}, t.total_errors) for s, t in tools),
    )
    out.family(
        "tooldeck_tool_refused_total",
        "counter",
        "Calls Tooldeck refused without sending them (disabled, bad arguments, not running).",
        (({"server": s.name, "tool": t.name}, t.total_refused) for s, t in tools),
    )
    out.family(
        "tooldeck_tool_cancelled_total",
        "counter",
        "Calls cancelled by their caller (or a shutdown) before the tool answered.",
        (({"server": s.name, "tool": t.name}, t.total_cancelled) for s, t in tools),
    )
    fleet = await ops.analytics(QUANTILE_PERIOD)
    out.family(
        "tooldeck_server_call_latency_seconds",
        "gauge",
        f"Latency quantiles of the server's tool calls over the last {QUANTILE_PERIOD} "
        "(within 1 %).",
        (
            ({"server": m.server_name, "quantile": quantile}, value / 1000)
            for m in fleet.server_metrics
            for quantile, field in QUANTILES
            if (value := getattr(m, field)) is not None
        ),
    )
    # Counted by the call path of the process that serves this page (the daemon's); a facade
    # without it (a remote one) still serves every other family.
    if ops.call_latency is not None:
        out.histogram_family(
            "tooldeck_tool_call_duration_seconds",
            "Duration of the tool's calls, as Tooldeck timed them.",
            ops.call_latency.snapshot(),
        )
    return out.render()

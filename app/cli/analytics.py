"""`tooldeck server metrics NAME` and `tooldeck analytics`: usage figures for a period."""

from __future__ import annotations

import argparse
from datetime import datetime

from app.cli.common import add_json_flag, ago, print_json, print_table
from app.core.periods import DEFAULT_PERIOD, PERIOD_NAMES
from app.core.schemas import ToolMetrics, ToolServerMetrics
from app.ops.protocol import Operations


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    metrics = _verbs_of(subparsers, "server").add_parser(
        "metrics", help="calls, errors, latency percentiles and uptime of one server"
    )
    metrics.add_argument("name")
    period_option(metrics)
    add_json_flag(metrics)
    metrics.set_defaults(handler=server_metrics)

    analytics = subparsers.add_parser(
        "analytics", help="the whole fleet: totals, servers, top and failing tools, daily usage"
    )
    period_option(analytics)
    add_json_flag(analytics)
    analytics.set_defaults(handler=system_analytics)


def _verbs_of(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], command: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The verbs of an existing command (`server` belongs to app/cli/servers.py)."""
    parser = subparsers.choices[command]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"`tooldeck {command}` has no verbs")


def period_option(parser: argparse.ArgumentParser) -> None:
    # Not `choices`: the facade names the accepted periods itself, the same for every face.
    parser.add_argument(
        "--period",
        default=DEFAULT_PERIOD,
        metavar="PERIOD",
        help=f"one of {', '.join(PERIOD_NAMES)} (default {DEFAULT_PERIOD})",
    )


async def server_metrics(args: argparse.Namespace, ops: Operations) -> int:
    metrics = await ops.server_metrics(args.name, args.period)
    if args.json:
        print_json(metrics)
        return 0
    rows = [
        ("server", f"{metrics.server_name} ({metrics.status})"),
        ("period", span(metrics.period_start, metrics.period_end)),
        ("tools", f"{metrics.enabled_tools} enabled of {metrics.total_tools}"),
        ("calls", metrics.total_calls),
        ("errors", metrics.total_errors),
        ("refused", metrics.total_refused),
        ("cancelled", metrics.total_cancelled),
        ("success", percent(metrics.success_rate)),
        ("mean", to_ms(metrics.avg_response_time_ms)),
        ("p50 / p95 / p99", " / ".join(to_ms(value) for value in _percentiles(metrics))),
        ("uptime", percent(metrics.uptime_percentage)),
        ("last call", ago(metrics.last_activity)),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    return 0


async def system_analytics(args: argparse.Namespace, ops: Operations) -> int:
    view = await ops.analytics(args.period)
    if args.json:
        print_json(view)
        return 0
    print(f"period {span(view.period_start, view.period_end)}")
    print(
        f"servers {view.active_servers} active of {view.total_servers}; "
        f"tools {view.enabled_tools} enabled of {view.total_tools}"
    )
    print(
        f"calls today {view.total_calls_today} ({view.total_errors_today} errors), "
        f"this week {view.total_calls_week}, this month {view.total_calls_month}"
    )
    print(
        f"in the period: success {percent(view.overall_success_rate)}, "
        f"mean {to_ms(view.avg_response_time_ms)}, p95 {to_ms(view.p95_response_time_ms)}; "
        f"not counted as calls: {view.total_refused} refused, {view.total_cancelled} cancelled"
    )
    print()
    print_table(
        ("server", "status", "calls", "errors", "refused", "success", "p95", "uptime", "last call"),
        (
            (
                server.server_name,
                server.status,
                server.total_calls,
                server.total_errors,
                server.total_refused,
                percent(server.success_rate),
                to_ms(server.p95_response_time_ms),
                percent(server.uptime_percentage),
                ago(server.last_activity),
            )
            for server in view.server_metrics
        ),
    )
    for title, tools in (("top tools", view.top_tools), ("failing tools", view.failing_tools)):
        print(f"\n{title}" + ("" if tools else ": none"))
        if tools:
            _tool_table(tools)
    if view.daily_usage:
        print("\ndaily calls (errors)")
        for day, calls in view.daily_usage.items():
            print(f"{day}  {calls} ({view.daily_errors.get(day, 0)})")
    return 0


def _tool_table(tools: list[ToolMetrics]) -> None:
    print_table(
        ("tool", "server", "status", "calls", "errors", "success", "mean", "last 24h"),
        (
            (
                tool.tool_name,
                tool.server_name or "-",
                tool.status,
                tool.total_calls,
                tool.total_errors,
                percent(tool.success_rate),
                to_ms(tool.avg_response_time_ms),
                f"{tool.calls_last_24h} ({tool.errors_last_24h} errors)",
            )
            for tool in tools
        ),
    )


def _percentiles(metrics: ToolServerMetrics) -> tuple[float | None, ...]:
    return (
        metrics.p50_response_time_ms,
        metrics.p95_response_time_ms,
        metrics.p99_response_time_ms,
    )


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f}%"


def to_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"

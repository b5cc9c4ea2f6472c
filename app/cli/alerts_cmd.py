"""`tooldeck audit`, `tooldeck alerts [ack ID | check | rules]`, `tooldeck limits NAME`,
`tooldeck trim [disable]` and `tooldeck tool auto-disable`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from app.cli.common import actor, add_json_flag, ago, print_json, print_table
from app.ops.protocol import Operations


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="who changed what, when, with before and after")
    audit.add_argument("--server", help="only this server (name or id)")
    audit.add_argument("--since", help="a duration such as 30m, 24h, 7d, 2w, or an ISO time")
    audit.add_argument("--actor", help="only this actor, e.g. cli:alice or system")
    audit.add_argument("-n", "--limit", type=int, default=200, help="at most this many (200)")
    add_json_flag(audit)
    audit.set_defaults(handler=show_audit)

    alerts = subparsers.add_parser("alerts", help="open alerts; `alerts ack ID` acknowledges")
    alerts.add_argument("--all", action="store_true", help="resolved alerts too")
    add_json_flag(alerts)
    alerts.set_defaults(handler=list_alerts)
    verbs = alerts.add_subparsers(dest="alert_verb", metavar="VERB")
    ack = verbs.add_parser("ack", help="acknowledge an alert")
    ack.add_argument("id", type=int, help="the alert's id, as `tooldeck alerts` lists it")
    add_json_flag(ack)
    ack.set_defaults(handler=ack_alert)
    check = verbs.add_parser("check", help="evaluate every rule now")
    add_json_flag(check)
    check.set_defaults(handler=check_alerts)
    rules = verbs.add_parser(
        "rules",
        help="the alert thresholds and hooks; NAME=VALUE sets them in config.toml",
        description="Without arguments: each rule, its value and where it comes from. With "
        "NAME=VALUE pairs (alert_p95_ms=2000, alert_webhook_url=): set them in config.toml and "
        "in a running daemon at once; an empty value puts a rule back to its default.",
    )
    rules.add_argument("changes", nargs="*", type=rule_change, metavar="NAME=VALUE")
    add_json_flag(rules)
    rules.set_defaults(handler=alert_rules)

    limits = subparsers.add_parser(
        "limits",
        help="show or set a server's resource limits (0 switches one off)",
        description="Show a server's resource limits, or change the ones given. 0 (or an "
        "empty account) switches a limit off; --sustain 0 restarts at the first sample over "
        "a limit.",
    )
    limits.add_argument("name")
    limits.add_argument(
        "--max-rss-mb", type=float, metavar="MB", help="restart when its memory (RSS) stays above"
    )
    limits.add_argument(
        "--max-cpu-percent", type=float, metavar="PERCENT", help="restart when its CPU stays above"
    )
    limits.add_argument(
        "--sustain",
        type=float,
        dest="sustain_s",
        metavar="SECONDS",
        help="how long a limit must be exceeded before the restart (default 30; 0: at once)",
    )
    limits.add_argument("--max-concurrent", type=int, metavar="N", help="calls at a time")
    limits.add_argument(
        "--max-queued", type=int, metavar="N", help="calls waiting beyond that; more are refused"
    )
    limits.add_argument(
        "--rlimit-as-mb", type=int, metavar="MB", help="hard address-space limit at spawn"
    )
    limits.add_argument("--rlimit-nofile", type=int, metavar="N", help="hard open-files limit")
    limits.add_argument(
        "--rlimit-cpu-s", type=int, metavar="SECONDS", help="hard CPU-time limit at spawn"
    )
    limits.add_argument("--user", dest="run_as_user", help="run as this account (needs root)")
    limits.add_argument("--group", dest="run_as_group", help="and this group")
    add_json_flag(limits)
    limits.set_defaults(handler=server_limits)

    trim = subparsers.add_parser("trim", help="enabled tools not called in the last N days")
    trim.add_argument("--days", type=int, default=30, help="the window (default 30)")
    add_json_flag(trim)
    trim.set_defaults(handler=show_trim)
    trim_verbs = trim.add_subparsers(dest="trim_verb", metavar="VERB")
    disable = trim_verbs.add_parser("disable", help="disable the suggested tools")
    disable.add_argument("--days", type=int, default=30, help="the window (default 30)")
    disable.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_json_flag(disable)
    disable.set_defaults(handler=disable_trim)

    tool = _verbs(subparsers, "tool")
    auto = tool.add_parser(
        "auto-disable", help="disable a tool on its own after N failed calls in a row (or off)"
    )
    auto.add_argument("server")
    auto.add_argument("tool")
    auto.add_argument(
        "after",
        type=failed_calls,
        metavar="N|off",
        help="failed calls in a row (1 to 1000), or off",
    )
    add_json_flag(auto)
    auto.set_defaults(handler=tool_auto_disable)


def _verbs(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], area: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = subparsers.choices[area]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"`tooldeck {area}` has no verbs to extend")


CHANGE_CHARS = 80


def _change(values: dict[str, Any] | None) -> str:
    if not values:
        return "-"
    text = ", ".join(f"{key}={json.dumps(value, default=str)}" for key, value in values.items())
    # A created server's whole definition would swamp the table; --json has all of it.
    return text if len(text) <= CHANGE_CHARS else text[: CHANGE_CHARS - 3] + "..."


async def show_audit(args: argparse.Namespace, ops: Operations) -> int:
    entries = await ops.list_audit(
        args.server, since=args.since, actor=args.actor, limit=args.limit
    )
    if args.json:
        print_json(entries)
        return 0
    print_table(
        ("when", "actor", "server", "what", "before", "after"),
        (
            (
                entry.at.strftime("%Y-%m-%d %H:%M:%S"),
                entry.actor,
                entry.server_name or entry.server_id,
                entry.message,
                _change(entry.before),
                _change(entry.after),
            )
            for entry in entries
        ),
    )
    return 0


async def list_alerts(args: argparse.Namespace, ops: Operations) -> int:
    alerts = await ops.list_alerts(include_resolved=args.all)
    if args.json:
        print_json(alerts)
        return 0
    if not alerts:
        print("no open alerts" if not args.all else "no alerts")
        return 0
    print_table(
        ("id", "status", "rule", "count", "first", "last", "ack", "message"),
        (
            (
                alert.id,
                alert.status,
                alert.rule,
                alert.count,
                ago(alert.first_seen),
                ago(alert.last_seen),
                alert.acknowledged_by or "-",
                alert.message,
            )
            for alert in alerts
        ),
    )
    return 0


async def ack_alert(args: argparse.Namespace, ops: Operations) -> int:
    alert = await ops.ack_alert(args.id, actor=actor())
    if args.json:
        print_json(alert)
    else:
        print(f"acknowledged alert {alert.id} by {alert.acknowledged_by}: {alert.message}")
    return 0


async def check_alerts(args: argparse.Namespace, ops: Operations) -> int:
    alerts = await ops.evaluate_alerts()
    if args.json:
        print_json(alerts)
    else:
        for alert in alerts:
            print(f"{alert.id}  {alert.rule}  {alert.message}")
        print(f"{len(alerts)} open alert{'s' if len(alerts) != 1 else ''}")
    return 0


def rule_change(text: str) -> tuple[str, str]:
    """argparse type of `alerts rules`: NAME=VALUE."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE, such as alert_p95_ms=2000, not {text!r}"
        )
    return name.strip().lower(), value.strip()


async def alert_rules(args: argparse.Namespace, ops: Operations) -> int:
    if args.changes:
        rules = await ops.set_alert_rules({"values": dict(args.changes)}, actor=actor())
    else:
        rules = await ops.alert_rules()
    if args.json:
        print_json(rules)
        return 0
    print_table(
        ("rule", "value", "source", "accepts"),
        (
            (
                rule.name,
                "-" if rule.value is None else rule.value,
                "config.toml" if rule.source.startswith("file") else rule.source,
                rule.accepts,
            )
            for rule in rules.rules
        ),
    )
    if args.changes:
        print(f"saved to {rules.config_file}")
    return 0


async def server_limits(args: argparse.Namespace, ops: Operations) -> int:
    given = {
        "max_rss_mb": args.max_rss_mb,
        "max_cpu_percent": args.max_cpu_percent,
        "sustain_s": args.sustain_s,
        "max_concurrent_calls": args.max_concurrent,
        "max_queued_calls": args.max_queued,
        "rlimit_as_mb": args.rlimit_as_mb,
        "rlimit_nofile": args.rlimit_nofile,
        "rlimit_cpu_s": args.rlimit_cpu_s,
        "run_as_user": args.run_as_user,
        "run_as_group": args.run_as_group,
    }
    changes = {key: value for key, value in given.items() if value is not None}
    if changes:
        current = (await ops.get_server_limits(args.name)).model_dump(exclude={"server_id"})
        for key, value in changes.items():
            # 0 (or "" for an account) switches a limit off; the queue's "off" is no queue, and
            # a sustain of 0 means at once.
            current[key] = value if value or key in ("max_queued_calls", "sustain_s") else None
        limits = await ops.set_server_limits(args.name, current, actor=actor())
    else:
        limits = await ops.get_server_limits(args.name)
    if args.json:
        print_json(limits)
    else:
        for key, value in limits.model_dump(exclude={"server_id"}).items():
            print(f"{key:22} {'off' if value is None else value}")
    return 0


async def show_trim(args: argparse.Namespace, ops: Operations) -> int:
    report = await ops.trim_suggestions(args.days)
    if args.json:
        print_json(report)
        return 0
    if not report.servers:
        print(f"every enabled tool was called in the last {report.days} days")
        return 0
    for server in report.servers:
        print(
            f"{server.server_name}: {server.unused_tools} of {server.enabled_tools} enabled "
            "tools unused"
        )
        for tool in server.tools:
            print(f"  {tool.tool_name}  last called {ago(tool.last_called)}")
    print(f"{report.total_unused} tools would be disabled: `tooldeck trim disable`")
    return 0


async def disable_trim(args: argparse.Namespace, ops: Operations) -> int:
    report = await ops.trim_suggestions(args.days)
    if report.total_unused == 0:
        print(f"nothing to disable: every enabled tool was called in the last {args.days} days")
        return 0
    if not args.yes:
        names = [f"{s.server_name}/{t.tool_name}" for s in report.servers for t in s.tools]
        print("\n".join(names))
        if not sys.stdin.isatty():
            print("tooldeck: not a terminal: pass --yes to disable these", file=sys.stderr)
            return 1
        question = f"disable these {report.total_unused} tools? [y/N] "
        # A terminal prompt on a thread: the loop may be serving a daemon connection.
        answer = await asyncio.to_thread(input, question)
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing disabled")
            return 1
    result = await ops.disable_unused_tools(args.days, actor=actor())
    if args.json:
        print_json(result)
    else:
        print(f"disabled {result.disabled} tools")
    return 0


def failed_calls(text: str) -> int | None:
    """argparse type of `auto-disable`'s N: a count, or off (None)."""
    if text.lower() in ("off", "none", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of failed calls or off, not {text!r}"
        ) from None


async def tool_auto_disable(args: argparse.Namespace, ops: Operations) -> int:
    after = args.after
    tool = await ops.set_tool_auto_disable(args.tool, after, actor=actor(), server_ref=args.server)
    if args.json:
        print_json(tool)
    else:
        when = f"after {after} failed calls" if after else "off"
        print(f"{tool.server_name}/{tool.name}: auto-disable {when}")
    return 0

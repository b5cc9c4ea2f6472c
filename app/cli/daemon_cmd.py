"""`tooldeck token show|rotate` and `tooldeck status`: the operator's side of headless mode."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from typing import Any

from app.cli.common import add_json_flag, cli_settings, fail, print_json
from app.core.errors import TooldeckError
from app.core.schemas import SERVER_STATUSES
from app.core.settings import Settings
from app.ops.attach import check_daemon, open_facade, running_daemon
from app.runtime.api_token import read_token, rotate_token, token_path
from app.runtime.lock import read_lock

# LSB's "program is not running": scripts can tell it from a failure.
EXIT_NOT_RUNNING = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser("token", help="the HTTP API's bearer token")
    verbs = token.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser(
        "show", help="print the token (the daemon makes it at its first start; never made here)"
    )
    add_json_flag(show)
    show.set_defaults(command_runner=show_token)
    verbs.add_parser(
        "rotate", help="replace the token; the old one stops working at once"
    ).set_defaults(command_runner=rotate)

    status = subparsers.add_parser(
        "status",
        help="is the daemon up: its address, uptime and servers by status "
        f"(exit {EXIT_NOT_RUNNING} when it is not running)",
    )
    add_json_flag(status)
    status.set_defaults(command_runner=show_status)


def show_token(args: argparse.Namespace) -> int:
    # Printing the secret is this command's whole purpose: `curl -H "Authorization: Bearer
    # $(tooldeck token show)"`. It is never printed anywhere else.
    data_dir = cli_settings(args).data_dir
    try:
        token = read_token(data_dir)
    except OSError as exc:
        return fail(f"cannot read {token_path(data_dir)}: {exc.strerror or exc}")
    if token is None:
        # Reading never makes one: a new token here would not be the one a daemon elsewhere
        # checks, and a script would go on with a useless secret.
        return fail(
            f"no API token in {data_dir}: the daemon makes it at its first start "
            "(`tooldeck token rotate` makes one now)"
        )
    print_json({"token": token}) if args.json else print(token)
    return 0


def rotate(args: argparse.Namespace) -> int:
    print(rotate_token(cli_settings(args).data_dir))
    print("tooldeck: the old token no longer works", file=sys.stderr)
    return 0


def show_status(args: argparse.Namespace) -> int:
    try:
        report, code = asyncio.run(_status(cli_settings(args)))
    except TooldeckError as exc:
        return fail(str(exc))
    if args.json:
        print_json(report)
    else:
        _print_status(report)
    return code


async def _status(settings: Settings) -> tuple[dict[str, Any], int]:
    report: dict[str, Any] = {"data_dir": str(settings.data_dir), "daemon": "not running"}
    code = EXIT_NOT_RUNNING
    info = await running_daemon(settings)
    if info is not None:
        report.update(daemon="running", pid=info.pid, url=info.url, uptime_s=round(info.uptime_s))
        if info.socket:
            report["socket"] = info.socket
        code = 0
        try:
            await check_daemon(info)
        except TooldeckError as exc:
            report.update(daemon="not answering", error=str(exc))
            code = 1
    else:
        holder = read_lock(settings.data_dir)
        if holder is not None:
            report.update(supervisor=f"{holder.kind} (pid {holder.pid})")
            if holder.socket:
                report["socket"] = holder.socket
    if report["daemon"] != "not answering":
        async with open_facade(settings) as ops:
            servers = await ops.list_servers()
        counts = Counter(server.status for server in servers)
        report["servers"] = {status: counts[status] for status in SERVER_STATUSES if counts[status]}
        report["servers_total"] = len(servers)
    return report, code


def _uptime(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{int(seconds)}s"


def _print_status(report: dict[str, Any]) -> None:
    daemon = report["daemon"]
    if "pid" in report:
        daemon += f" (pid {report['pid']}), up {_uptime(report['uptime_s'])}"
    rows = [("daemon", daemon)]
    if report.get("url"):
        rows.append(("address", report["url"]))
    if report.get("error"):
        rows.append(("error", report["error"]))
    if report.get("supervisor"):
        rows.append(("supervisor", f"in-process: {report['supervisor']}"))
    if report.get("socket"):
        rows.append(("cli socket", report["socket"]))
    rows.append(("data dir", report["data_dir"]))
    if "servers" in report:
        by_status = ", ".join(f"{count} {status}" for status, count in report["servers"].items())
        total = report["servers_total"]
        rows.append(("servers", f"{total}" + (f": {by_status}" if by_status else "")))
    for label, value in rows:
        print(f"{label:10} {value}")

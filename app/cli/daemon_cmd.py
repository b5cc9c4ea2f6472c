"""`tooldeck status`: is the daemon up, where, and how its servers are."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from typing import Any

from app.cli.common import add_json_flag, cli_settings, fail, print_json
from app.cli.database_cmd import check_json, database_rows
from app.core.errors import TooldeckError
from app.core.schemas import SERVER_STATUSES
from app.core.settings import Settings
from app.ops.attach import check_daemon, open_facade, running_daemon
from app.ops.database_admin import check_database
from app.runtime.lock import read_lock

# LSB's "program is not running": scripts can tell it from a failure.
EXIT_NOT_RUNNING = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser(
        "status",
        help="is the daemon up: its address, uptime and servers by status "
        f"(exit {EXIT_NOT_RUNNING} when it is not running)",
    )
    add_json_flag(status)
    status.set_defaults(command_runner=show_status)


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
    database = await check_database(settings.effective_database_url)
    if database.reachable and report["daemon"] != "not answering":
        async with open_facade(settings) as ops:
            servers = await ops.list_servers()
        counts = Counter(server.status for server in servers)
        report["servers"] = {status: counts[status] for status in SERVER_STATUSES if counts[status]}
        report["servers_total"] = len(servers)
        if not database.up_to_date:  # opening the facade has just migrated it
            database = await check_database(settings.effective_database_url)
    report["database"] = check_json(database)
    if not database.up_to_date:
        code = code or 1
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
    rows += database_rows(report["database"])
    if "servers" in report:
        by_status = ", ".join(f"{count} {status}" for status, count in report["servers"].items())
        total = report["servers_total"]
        rows.append(("servers", f"{total}" + (f": {by_status}" if by_status else "")))
    for label, value in rows:
        print(f"{label:10} {value}")

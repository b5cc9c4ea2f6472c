"""`tooldeck db check` and `tooldeck db copy --to URL | --from URL`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict
from typing import Any

from app.cli.common import add_json_flag, cli_settings, fail, print_json
from app.core.errors import TooldeckError
from app.core.scrub import mask_url
from app.ops.database_admin import DatabaseCheck, check_database, copy_database

# Progress lines for a large table come at most this often.
PROGRESS_EVERY_S = 1.0


def register_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = verbs.add_parser(
        "check",
        help="connect to the database: its schema revision and what it holds "
        "(exit 1 when it cannot be used)",
    )
    add_json_flag(check)
    check.set_defaults(command_runner=check_db)

    copy = verbs.add_parser(
        "copy",
        help="copy every server, tool, call, rollup, event, alert and audit entry to or from "
        "another database (SQLite or PostgreSQL), then compare the row counts",
    )
    direction = copy.add_mutually_exclusive_group(required=True)
    direction.add_argument("--to", metavar="URL", help="copy this data dir's database to URL")
    direction.add_argument("--from", dest="source", metavar="URL", help="copy URL into this one")
    copy.add_argument("--force", action="store_true", help="replace what the target already holds")
    copy.set_defaults(command_runner=copy_db)


def check_db(args: argparse.Namespace) -> int:
    report = check_json(asyncio.run(check_database(cli_settings(args).effective_database_url)))
    if args.json:
        print_json(report)
    else:
        for label, value in database_rows(report):
            print(f"{label:10} {value}")
    return 0 if report["up_to_date"] else 1


def check_json(check: DatabaseCheck) -> dict[str, Any]:
    report: dict[str, Any] = {
        "url": check.url,
        "reachable": check.reachable,
        "revision": check.revision,
        "head": check.head,
        "schema": None if check.error else check.revision_text(),
        "up_to_date": check.up_to_date,
    }
    if check.error is not None:
        report["error"] = check.error
    if check.inventory is not None:
        report["stored"] = {**asdict(check.inventory), "summary": check.inventory.summary()}
    return report


def database_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """`db check`'s lines, also shown by `tooldeck status`."""
    stored = report.get("stored")
    where = report["url"]
    if stored:
        where += f" ({stored['backend']} {stored['server_version']})"
    rows = [("database", where)]
    if "error" in report:
        return [*rows, ("db error", report["error"])]
    rows.append(("schema", report["schema"]))
    if stored:
        rows.append(("stored", stored["summary"]))
    return rows


def copy_db(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    here = settings.effective_database_url
    source, target = (here, args.to) if args.to else (args.source, here)
    try:
        counts = asyncio.run(
            copy_database(
                settings,
                source_url=source,
                target_url=target,
                force=args.force,
                progress=ProgressLines(f"copying {mask_url(source)} -> {mask_url(target)}"),
            )
        )
    except TooldeckError as exc:
        return fail(str(exc))
    total = sum(count.target for count in counts)
    print(f"copied {total:,} rows in {len(counts)} tables; every count matches")
    return 0


class ProgressLines:
    """On stderr once the copy starts: `header`, then a line per table and a line a second
    while a large one is copied."""

    def __init__(self, header: str) -> None:
        self._header: str | None = header
        self._shown = 0.0

    def __call__(self, table: str, copied: int, total: int) -> None:
        if self._header is not None:
            print(self._header, file=sys.stderr, flush=True)
            self._header = None
        now = time.monotonic()
        if copied == total:
            print(f"  {table:<20} {total:>12,} rows", file=sys.stderr, flush=True)
        elif copied and now - self._shown >= PROGRESS_EVERY_S:
            share = copied / total if total else 1.0
            print(
                f"  {table:<20} {copied:>12,} of {total:,} ({share:.0%})",
                file=sys.stderr,
                flush=True,
            )
        else:
            return
        self._shown = now

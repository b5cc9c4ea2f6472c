"""`tooldeck config` and `tooldeck db upgrade|current`.

These run without the facade: they must work on a database that is not migrated yet.
"""

from __future__ import annotations

import argparse
import asyncio

from app.cli.common import add_json_flag, print_json, print_table
from app.core.schemas import MASK
from app.core.settings import Settings, describe_settings, load_settings
from app.ops.bootstrap import schema_revisions, upgrade_schema


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser("config", help="the effective settings and where each came from")
    add_json_flag(config)
    config.set_defaults(command_runner=show_config)

    db = subparsers.add_parser("db", help="database schema migrations")
    verbs = db.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("upgrade", help="apply pending migrations").set_defaults(
        command_runner=upgrade_db
    )
    verbs.add_parser("current", help="the schema revision of the database").set_defaults(
        command_runner=current_db
    )


def _masked_url(url: str) -> str:
    # A PostgreSQL URL may carry a password: never print it.
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:{MASK}@{host}"


def show_config(args: argparse.Namespace) -> int:
    flags = {"data_dir": args.data_dir}
    settings = load_settings(args.data_dir, flags)
    rows = describe_settings(settings, flags)
    for index, row in enumerate(rows):
        if row.name == "TOOLDECK_DATABASE_URL":
            rows[index] = type(row)(row.name, _masked_url(str(row.value)), row.source)
    if args.json:
        print_json([{"name": r.name, "value": r.value, "source": r.source} for r in rows])
    else:
        print_table(
            ("setting", "value", "source"),
            (
                [r.name, ",".join(r.value) if isinstance(r.value, list) else r.value, r.source]
                for r in rows
            ),
        )
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.data_dir, {"data_dir": args.data_dir})


def upgrade_db(args: argparse.Namespace) -> int:
    before, after = asyncio.run(upgrade_schema(_settings(args)))
    print(f"database at {after}" + (f" (was {before or 'empty'})" if before != after else ""))
    return 0


def current_db(args: argparse.Namespace) -> int:
    current, head = asyncio.run(schema_revisions(_settings(args)))
    state = "up to date" if current == head else f"head is {head}: run `tooldeck db upgrade`"
    print(f"{current or 'empty'} ({state})")
    return 0

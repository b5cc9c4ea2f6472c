"""`tooldeck config` and `tooldeck db upgrade|current` (`check` and `copy`: app.cli.database_cmd).

These run without the facade: they must work on a database that is not migrated yet.
"""

from __future__ import annotations

import argparse
import asyncio

from app.cli import database_cmd
from app.cli.common import add_json_flag, cli_settings, print_json, print_table, settings_flags
from app.core.settings import describe_settings, load_settings
from app.ops.bootstrap import schema_revisions, upgrade_schema


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser("config", help="the effective settings and where each came from")
    add_json_flag(config)
    config.set_defaults(command_runner=show_config)

    db = subparsers.add_parser(
        "db", help="the database: schema migrations, a health check, copying to another one"
    )
    verbs = db.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("upgrade", help="apply pending migrations").set_defaults(
        command_runner=upgrade_db
    )
    current = verbs.add_parser("current", help="the schema revision of the database")
    add_json_flag(current)
    current.set_defaults(command_runner=current_db)
    database_cmd.register_verbs(verbs)


def show_config(args: argparse.Namespace) -> int:
    flags = settings_flags(args)
    settings = load_settings(args.data_dir, flags)
    rows = describe_settings(settings, flags)
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


def upgrade_db(args: argparse.Namespace) -> int:
    before, after = asyncio.run(upgrade_schema(cli_settings(args)))
    print(f"database at {after}" + (f" (was {before or 'empty'})" if before != after else ""))
    return 0


def current_db(args: argparse.Namespace) -> int:
    current, head = asyncio.run(schema_revisions(cli_settings(args)))
    if args.json:
        print_json({"current": current, "head": head, "up_to_date": current == head})
        return 0
    state = "up to date" if current == head else f"head is {head}: run `tooldeck db upgrade`"
    print(f"{current or 'empty'} ({state})")
    return 0

"""`tooldeck import` and `tooldeck export`: MCP client configurations in and out."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.common import actor, add_json_flag, fail, print_json, print_table
from app.core.errors import InvalidInput
from app.core.interchange import (
    CLIENT_LABELS,
    KNOWN_CLIENTS,
    client_config_path,
    parse_json,
    read_document,
    write_document,
)
from app.core.schemas import EXPORT_FORMATS, MASK, ImportReport
from app.ops.protocol import Operations

ACTION_WORDS = {
    "create": ("created", "would create"),
    "rename": ("created", "would create"),
    "overwrite": ("overwritten", "would overwrite"),
    "unchanged": ("unchanged", "unchanged"),
    "skip": ("skipped", "would skip"),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    importing = subparsers.add_parser(
        "import",
        help="add servers from an MCP client's configuration (Claude Desktop, Cursor, VS Code)",
        description="Read the mcpServers object (Claude Desktop, Cursor, Windsurf, ...) or VS "
        "Code's servers object and add its servers, all or none. A name that exists is skipped "
        "unless --overwrite or --rename; built-in servers are never replaced.",
    )
    source = importing.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "file", nargs="?", metavar="FILE", help="a JSON configuration file ('-' reads stdin)"
    )
    source.add_argument(
        "--from",
        dest="client",
        choices=KNOWN_CLIENTS,
        help="read that client's configuration from its usual place",
    )
    importing.add_argument(
        "--dry-run", action="store_true", help="show what would happen, write nothing"
    )
    conflict = importing.add_mutually_exclusive_group()
    conflict.add_argument(
        "--overwrite",
        dest="on_conflict",
        action="store_const",
        const="overwrite",
        help="replace the definition of a server with the same name",
    )
    conflict.add_argument(
        "--rename",
        dest="on_conflict",
        action="store_const",
        const="rename",
        help="import beside a server with the same name, as NAME-2",
    )
    add_json_flag(importing)
    importing.set_defaults(handler=import_servers, on_conflict="skip")

    export = subparsers.add_parser(
        "export",
        help="write servers as an MCP client configuration",
        description="Print (or write with -o) the named servers, or all of them, in Claude "
        "Desktop's mcpServers format or VS Code's servers format. Env and header values are "
        "masked unless --include-secrets.",
    )
    export.add_argument("names", nargs="*", metavar="NAME")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="claude")
    export.add_argument(
        "--include-secrets", action="store_true", help="write env and header values as they are"
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    export.add_argument(
        "--json",
        action="store_true",
        help="the document is JSON already; with -o, print what was written as JSON",
    )
    export.set_defaults(handler=export_servers)


async def import_servers(args: argparse.Namespace, ops: Operations) -> int:
    if args.client:
        path = client_config_path(args.client)
        source = str(path)
        document = await asyncio.to_thread(
            read_document, path, label=f"{CLIENT_LABELS[args.client]}'s configuration"
        )
    elif args.file == "-":
        source = "stdin"
        document = parse_json(await asyncio.to_thread(sys.stdin.buffer.read), source=source)
    else:
        source = args.file
        document = await asyncio.to_thread(read_document, Path(args.file))
    try:
        report = await ops.import_servers(
            document, dry_run=args.dry_run, on_conflict=args.on_conflict, actor=actor()
        )
    except InvalidInput as exc:
        # The facade knows the entry and the field; the file is only known here.
        return fail(f"{source}: {exc}")
    if args.json:
        print_json(report)
    else:
        print_report(report, source)
    return 0


def print_report(report: ImportReport, source: str) -> None:
    for item in report.items:
        for warning in item.warnings:
            print(f"tooldeck: warning: {warning}", file=sys.stderr)
    if not report.items:
        print(f"no servers in {source} ({', '.join(report.sections)} is empty)")
        return
    print(f"{source}: {_servers(len(report.items))} in {', '.join(report.sections)}")
    print_table(
        ("action", "name", "transport", "from", "note"),
        (
            [
                ACTION_WORDS[item.action][1 if report.dry_run else 0],
                item.name,
                item.transport,
                # The mapping from the client's name to ours, only where they differ.
                item.source_name if item.source_name != item.name else "",
                item.reason or "",
            ]
            for item in report.items
        ),
    )
    counts = (
        f"{report.created} to create, {report.overwritten} to overwrite, "
        f"{report.unchanged} unchanged, {report.skipped} to skip"
        if report.dry_run
        else f"{report.created} created, {report.overwritten} overwritten, "
        f"{report.unchanged} unchanged, {report.skipped} skipped"
    )
    print(f"dry run: {counts}; nothing was written" if report.dry_run else counts)
    if report.on_conflict == "skip" and report.skipped:
        print("names that exist were skipped: --overwrite replaces them, --rename imports beside")


async def export_servers(args: argparse.Namespace, ops: Operations) -> int:
    document = await ops.export_servers(
        args.names or None, format=args.format, include_secrets=args.include_secrets
    )
    if args.output:
        output = Path(args.output)
        await asyncio.to_thread(write_document, output, document)
        servers = next(iter(document.values()))
        if args.json:
            print_json({"path": str(output), "servers": sorted(servers)})
        else:
            print(f"wrote {_servers(len(servers))} to {output}", file=sys.stderr)
    else:
        print(json.dumps(document, indent=2))
    if not args.include_secrets and _has_masked(document):
        print(
            "tooldeck: env and header values are masked; --include-secrets writes them",
            file=sys.stderr,
        )
    return 0


def _has_masked(document: dict[str, Any]) -> bool:
    return any(
        value == MASK
        for servers in document.values()
        for entry in servers.values()
        for key in ("env", "headers")
        for value in entry.get(key, {}).values()
    )


def _servers(count: int) -> str:
    return f"{count} server" if count == 1 else f"{count} servers"

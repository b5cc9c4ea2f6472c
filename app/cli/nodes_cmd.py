"""`tooldeck nodes`: the daemons sharing this database, and how many servers each runs."""

from __future__ import annotations

import argparse

from app.cli.common import add_json_flag, ago, print_json, print_table
from app.ops.protocol import Operations


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nodes = subparsers.add_parser(
        "nodes", help="the nodes of the fleet on this database (one on SQLite)"
    )
    add_json_flag(nodes)
    nodes.set_defaults(handler=list_nodes)


async def list_nodes(args: argparse.Namespace, ops: Operations) -> int:
    nodes = await ops.list_nodes()
    if args.json:
        print_json(nodes)
        return 0
    print_table(
        ("node", "state", "servers", "heartbeat", "up since", "version", "address"),
        (
            [
                node.name + (" *" if node.this_node else ""),
                "alive" if node.alive else "down",
                node.servers,
                f"{ago(node.heartbeat_at)} ago",
                f"{ago(node.started_at)} ago",
                node.version or "-",
                node.advertise_url or "-",
            ]
            for node in nodes
        ),
    )
    return 0

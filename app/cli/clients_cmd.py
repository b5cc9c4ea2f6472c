"""`tooldeck clients [NAME]`: who is connected to the gateway now, and what each client calls."""

from __future__ import annotations

import argparse

from app.cli.analytics import percent, period_option, span, to_ms
from app.cli.common import add_json_flag, ago, print_json, print_table
from app.core.clients import GatewaySession
from app.ops.protocol import Operations

NO_GATEWAY = (
    "no gateway runs here: start `tooldeck --headless` (or `tooldeck gateway --stdio`) "
    "to see the sessions connected now"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    clients = subparsers.add_parser(
        "clients",
        help="the gateway's client sessions now, and each client's calls, errors and p95",
        description="With NAME: that client's sessions and the tools it calls most.",
    )
    clients.add_argument("name", nargs="?", help="one client, by its clientInfo name")
    period_option(clients)
    add_json_flag(clients)
    clients.set_defaults(handler=show_clients)


async def show_clients(args: argparse.Namespace, ops: Operations) -> int:
    if args.name is not None:
        return await _show_client(args, ops)
    report = await ops.clients(args.period)
    if args.json:
        print_json(report)
        return 0
    print("sessions connected now" + ("" if report.sessions else ": none"))
    if not report.gateway_running:
        print(NO_GATEWAY)
    elif report.sessions:
        _session_table(report.sessions)
    print(f"\nclients, {span(report.period_start, report.period_end)}")
    if not report.clients:
        print("no client called a tool in this period")
        return 0
    print_table(
        ("client", "sessions", "calls", "errors", "error rate", "p95", "last call"),
        (
            (
                client.client_name,
                client.sessions,
                client.calls,
                client.errors,
                percent(client.error_rate),
                to_ms(client.p95_response_time_ms),
                ago(client.last_called),
            )
            for client in report.clients
        ),
    )
    return 0


async def _show_client(args: argparse.Namespace, ops: Operations) -> int:
    detail = await ops.client_detail(args.name, args.period)
    if args.json:
        print_json(detail)
        return 0
    figures = detail.figures
    print(f"client {figures.client_name}, {span(detail.period_start, detail.period_end)}")
    print(
        f"calls {figures.calls}, errors {figures.errors} ({percent(figures.error_rate)}), "
        f"refused {figures.refused}, p95 {to_ms(figures.p95_response_time_ms)}, "
        f"last call {ago(figures.last_called)}"
    )
    print("\nsessions connected now" + ("" if detail.sessions else ": none"))
    if detail.sessions:
        _session_table(detail.sessions)
    print("\ntools it calls most" + ("" if detail.tools else ": none in this period"))
    if detail.tools:
        print_table(
            ("tool", "server", "calls", "errors", "p95", "last call"),
            (
                (
                    tool.tool_name,
                    tool.server_name or "(deleted)",
                    tool.calls,
                    tool.errors,
                    to_ms(tool.p95_response_time_ms),
                    ago(tool.last_called),
                )
                for tool in detail.tools
            ),
        )
    return 0


def _session_table(sessions: list[GatewaySession]) -> None:
    print_table(
        ("client", "version", "protocol", "via", "endpoint", "token", "since", "calls", "errors"),
        (
            (
                session.client_name or "(unnamed)",
                session.client_version or "-",
                session.protocol_version or "-",
                session.transport,
                session.endpoint,
                session.token_name or "-",
                ago(session.since),
                session.calls,
                session.errors,
            )
            for session in sessions
        ),
    )

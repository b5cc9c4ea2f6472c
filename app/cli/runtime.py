"""`tooldeck server start|stop|restart|health|logs|history|probe`, `tool call` and `jobs`.

Starting, stopping, health checks, tool calls and jobs need the supervisor, so they go to the
running daemon (or refuse, naming how to start one). `server logs` reads the log file when no
daemon runs, and `server probe` needs none at all.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from app.cli.common import actor, add_json_flag, ago, print_json, print_table
from app.core.errors import InvalidInput
from app.core.schemas import ProbeReport, ToolCallResult
from app.ops.bootstrap import JOB_NAMES
from app.ops.protocol import Operations


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = _verbs(subparsers, "server")
    for verb, what in (
        ("start", "start servers and wait until they run (or say why not)"),
        ("stop", "stop servers; their whole process group ends"),
        ("restart", "stop and start servers"),
    ):
        control = server.add_parser(verb, help=what)
        control.add_argument("names", nargs="+", metavar="NAME")
        add_json_flag(control)
        control.set_defaults(handler=control_servers, operation=verb)

    health = server.add_parser("health", help="ping a server now and show its health")
    health.add_argument("name")
    add_json_flag(health)
    health.set_defaults(handler=server_health)

    logs = server.add_parser("logs", help="the last lines a server wrote to stderr")
    logs.add_argument("name")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many (default 50)")
    add_json_flag(logs)
    logs.set_defaults(handler=server_logs)

    history = server.add_parser(
        "history", help="a local server's memory and CPU over time, as sampled every minute"
    )
    history.add_argument("name")
    history.add_argument("--since", default="1h", help="30m, 24h, 7d, 2w or ISO 8601 (default 1h)")
    add_json_flag(history)
    history.set_defaults(handler=server_history)

    probe = server.add_parser(
        "probe", help="start or connect once: initialize, list tools, ping, stop (no daemon needed)"
    )
    probe.add_argument("name")
    add_json_flag(probe)
    probe.set_defaults(handler=probe_server)

    tool = _verbs(subparsers, "tool")
    call = tool.add_parser("call", help="call a tool; exit 1 when the result is an error")
    call.add_argument("server")
    call.add_argument("tool")
    call.add_argument("--args", dest="arguments", default="{}", help="a JSON object")
    add_json_flag(call)
    call.set_defaults(handler=call_tool, one_shot_runtime=True)

    jobs = subparsers.add_parser("jobs", help="the scheduler's jobs; `jobs run NAME` runs one now")
    add_json_flag(jobs)
    jobs.set_defaults(handler=list_jobs)
    job_verbs = jobs.add_subparsers(dest="job_verb", metavar="VERB")
    run = job_verbs.add_parser("run", help="run a job now and wait for it")
    run.add_argument("job", choices=JOB_NAMES, help=", ".join(JOB_NAMES))
    add_json_flag(run)
    run.set_defaults(handler=run_job)


def _verbs(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], area: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The verbs of an area another module registered (`server`, `tool`), to add ours to."""
    parser = subparsers.choices[area]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"`tooldeck {area}` has no verbs to extend")


# ---- servers ----------------------------------------------------------------------------------


async def control_servers(args: argparse.Namespace, ops: Operations) -> int:
    if len(args.names) > 1:
        result = await ops.bulk(
            {"server_ids": args.names, "operation": args.operation}, actor=actor()
        )
        if args.json:
            print_json(result)
        else:
            for item in result.results:
                print(f"{'ok  ' if item.success else 'FAIL'} {item.server_id}: {item.message}")
        return 0 if result.failed == 0 else 1
    methods = {
        "start": ops.start_server,
        "stop": ops.stop_server,
        "restart": ops.restart_server,
    }
    server = await methods[args.operation](args.names[0], actor=actor())
    if args.json:
        print_json(server)
    else:
        past = {"start": "started", "stop": "stopped", "restart": "restarted"}[args.operation]
        print(f"{past} {server.name}: {server.status}")
    return 0


async def server_health(args: argparse.Namespace, ops: Operations) -> int:
    health = await ops.check_health(args.name)
    if args.json:
        print_json(health)
    else:
        latency = "-" if health.latency_ms is None else f"{health.latency_ms:.1f} ms"
        rows = [
            ("server", health.server_name),
            ("status", health.status),
            ("running", "yes" if health.is_running else "no"),
            ("responsive", "yes" if health.is_responsive else "no"),
            ("latency", latency),
            ("tools", health.tools_count),
            ("checked", f"{ago(health.last_check)} ago" if health.last_check else "never"),
        ]
        if health.error_message:
            rows.append(("error", health.error_message))
        for field, value in rows:
            print(f"{field:11} {value}")
    return 0 if health.is_responsive else 1


async def server_logs(args: argparse.Namespace, ops: Operations) -> int:
    lines = await ops.log_tail(args.name, args.lines)
    if args.json:
        print_json(lines)
        return 0
    for line in lines:
        print(line)
    return 0


async def server_history(args: argparse.Namespace, ops: Operations) -> int:
    history = await ops.process_history(args.name, args.since)
    if args.json:
        print_json(history)
        return 0
    if not history.samples:
        print(
            f"no samples of {history.server_name} since {history.since:%Y-%m-%d %H:%M} UTC: "
            f"running local servers are sampled every {history.interval_s:g} s"
        )
        return 0
    print_table(
        ("SAMPLED", "MEMORY", "CPU"),
        (
            (
                f"{sample.sampled_at.astimezone():%Y-%m-%d %H:%M:%S}",
                "-" if sample.rss_bytes is None else f"{sample.rss_bytes / 2**20:.1f} MiB",
                "-" if sample.cpu_percent is None else f"{sample.cpu_percent:g}%",
            )
            for sample in history.samples
        ),
    )
    return 0


async def probe_server(args: argparse.Namespace, ops: Operations) -> int:
    report = await ops.probe(args.name)
    if args.json:
        print_json(report)
    else:
        print_probe(report)
    return 0 if report.ok else 1


def print_probe(report: ProbeReport) -> None:
    out = sys.stdout if report.ok else sys.stderr
    verdict = "ok" if report.ok else "FAILED"
    print(f"{report.name}: {verdict} in {report.total_ms:.0f} ms  ({report.target})", file=out)
    if report.error:
        print(f"  error      {report.error}", file=out)
    if report.server_name:
        print(f"  server     {report.server_name} {report.server_version or ''}".rstrip(), file=out)
        print(f"  protocol   {report.protocol_version}", file=out)
    timings = [
        (label, value)
        for label, value in (
            ("connect", report.connect_ms),
            ("tools/list", report.list_tools_ms),
            ("ping", report.ping_ms),
        )
        if value is not None
    ]
    if timings:
        print("  timings    " + "   ".join(f"{k} {v:.1f} ms" for k, v in timings), file=out)
    if report.tools:
        print(f"  tools ({len(report.tools)})", file=out)
        width = max(len(tool.name) for tool in report.tools)
        for tool in report.tools:
            summary = (tool.description or "").strip().splitlines()
            first = summary[0] if summary else ""
            print(f"    {tool.name.ljust(width)}  {first}".rstrip(), file=out)
    if not report.ok and report.stderr_tail:
        print("  stderr", file=out)
        for line in report.stderr_tail[-10:]:
            print(f"    {line}", file=out)


# ---- tools ------------------------------------------------------------------------------------


async def call_tool(args: argparse.Namespace, ops: Operations) -> int:
    try:
        arguments: Any = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON: {exc}", field="--args") from None
    result = await ops.call_tool(
        args.server,
        args.tool,
        arguments,
        source="cli",
        client_name="tooldeck-cli",
        user=_user(),
    )
    if args.json:
        print_json(result)
    else:
        print_result(result)
    return 1 if result.is_error else 0


def print_result(result: ToolCallResult) -> None:
    out = sys.stderr if result.is_error else sys.stdout
    texts = [block["text"] for block in result.content if block.get("type") == "text"]
    others = [block for block in result.content if block.get("type") != "text"]
    for text in texts:
        print(text, file=out)
    for block in others:
        print(json.dumps(block), file=out)
    if not texts and not others and result.structured_content is not None:
        print(json.dumps(result.structured_content), file=out)
    # The time goes to stderr: stdout stays the bare result for scripts.
    verdict = "error" if result.is_error else "ok"
    print(f"({verdict}, {result.duration_ms:.1f} ms)", file=sys.stderr)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


# ---- jobs -------------------------------------------------------------------------------------


async def list_jobs(args: argparse.Namespace, ops: Operations) -> int:
    jobs = await ops.scheduler_jobs()
    if args.json:
        print_json(jobs)
        return 0
    print_table(
        ("job", "every", "running", "runs", "last run", "took", "outcome", "next in"),
        (
            [
                job.name,
                _span(job.interval_s),
                "yes" if job.running else "no",
                job.runs,
                f"{ago(job.last_started_at)} ago" if job.last_started_at else "never",
                "-" if job.last_duration_ms is None else f"{job.last_duration_ms:.0f} ms",
                job.last_outcome or "-",
                _until(job.next_run_at),
            ]
            for job in jobs
        ),
    )
    return 0


async def run_job(args: argparse.Namespace, ops: Operations) -> int:
    job = await ops.run_job(args.job)
    if args.json:
        print_json(job)
    else:
        took = "-" if job.last_duration_ms is None else f"{job.last_duration_ms:.0f} ms"
        print(f"{job.name}: {job.last_outcome} ({took})")
    return 0 if job.last_ok else 1


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _until(moment: Any) -> str:
    from datetime import UTC, datetime

    if moment is None:
        return "-"
    seconds = max(0, int((moment - datetime.now(UTC)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

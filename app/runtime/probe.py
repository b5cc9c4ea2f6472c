"""A one-shot connection test: start or connect, initialize, list tools, ping, stop.

Needs no supervisor and writes nothing: it is `tooldeck server probe` and the edit form's
"Test connection". The server's stderr is kept in memory only.
"""

from __future__ import annotations

import time
from typing import Any

from app.core.log_files import FLEET_SECRETS
from app.core.schemas import ProbeReport, ProbeTool
from app.core.scrub import Scrubber, mask_args, mask_url
from app.runtime.connections import ConnectionSpec, ServerLog, StartError, open_connection, seconds
from app.runtime.spawn_guard import launcher

PROBE_STDERR_LINES = 20


def describe_target(spec: ConnectionSpec) -> str:
    if spec.transport == "stdio":
        return " ".join([spec.command or "", *mask_args(spec.args)]).strip()
    return mask_url(spec.url) or ""


async def probe(source: Any, *, startup_timeout: float, call_timeout: float) -> ProbeReport:
    """Probe a server described by `source` (a server row or a ToolServerCreate)."""
    spec = ConnectionSpec.of(source)
    log = ServerLog()
    log.scrub = Scrubber.of(spec)
    FLEET_SECRETS.remember(spec.name, log.scrub.values)
    report = ProbeReport(
        ok=False,
        name=spec.name,
        transport=spec.transport,  # type: ignore[arg-type]
        target=describe_target(spec),
        total_ms=0.0,
    )
    began = time.monotonic()
    try:
        async with open_connection(
            spec, startup_timeout=startup_timeout, log=log, launcher=launcher()
        ) as conn:
            report.connect_ms = round(conn.connect_ms, 1)
            report.protocol_version = conn.protocol_version
            report.server_name = conn.server_name
            report.server_version = conn.server_version
            report.instructions = conn.instructions
            step = time.monotonic()
            try:
                tools = await conn.list_tools(call_timeout)
            except TimeoutError:
                report.error = f"tools/list timed out after {seconds(call_timeout)} s"
            except Exception as exc:
                report.error = f"tools/list failed: {getattr(exc, 'message', None) or exc}"
            else:
                report.list_tools_ms = round((time.monotonic() - step) * 1000, 1)
                report.tools = [
                    ProbeTool(name=tool.name, title=tool.title, description=tool.description)
                    for tool in tools
                ]
            step = time.monotonic()
            try:
                await conn.ping(call_timeout)
            except TimeoutError:
                report.error = report.error or f"ping timed out after {seconds(call_timeout)} s"
            except Exception as exc:
                report.error = (
                    report.error or f"ping failed: {getattr(exc, 'message', None) or exc}"
                )
            else:
                report.ping_ms = round((time.monotonic() - step) * 1000, 1)
    except StartError as exc:
        report.error = exc.message
    report.ok = report.error is None
    report.error = log.scrub.optional(report.error)
    report.total_ms = round((time.monotonic() - began) * 1000, 1)
    report.stderr_tail = [
        line for line in log.tail(PROBE_STDERR_LINES) if not line.startswith("[tooldeck ")
    ]
    return report

"""The operations facade: every user-visible action is one method here.

The TUI, the CLI, the HTTP API and the gateway all call these methods (directly, or through
`app/ops/remote.py` when attached to a daemon), so each behaviour is written and tested once.
Mutating operations take an `actor` ("cli:alice", "api:token", "system") and write an event
naming it. Secrets (env and header values) are masked in every answer unless `reveal=True`.
"""

from __future__ import annotations

from app.core.changes import ChangeBus
from app.core.settings import Settings
from app.ops.alerts import AlertOperations
from app.ops.analytics import AnalyticsOperations
from app.ops.base import JobRunner, Runtime, UsageSink
from app.ops.builtins import BuiltinOperations, builtin_server_spec
from app.ops.bulk import BulkOperations
from app.ops.calls import CallOperations
from app.ops.interchange import InterchangeOperations
from app.runtime.call_latency import CallLatency
from storage.db import Database
from storage.models import ServerTool, ToolServer

__all__ = ["JobRunner", "Operations", "Runtime", "UsageSink", "builtin_server_spec"]


class Operations(
    CallOperations,
    BulkOperations,
    BuiltinOperations,
    AnalyticsOperations,
    InterchangeOperations,
    AlertOperations,
):
    """The facade over storage and (when present) the runtime."""

    # Wired by app.ops.bootstrap.running_core; absent in a process that runs no servers.
    scheduler: JobRunner | None = None
    recorder: UsageSink | None = None

    def __init__(
        self,
        db: Database,
        settings: Settings,
        runtime: Runtime | None = None,
        *,
        recorder: UsageSink | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.runtime = runtime
        self.recorder = recorder
        # Who wants to know that servers or tools changed: the gateway, the dashboard.
        self.changes = ChangeBus()
        self._routes: dict[tuple[str, str], tuple[ToolServer, ServerTool]] = {}
        # Durations of this process's calls per tool, for Prometheus histograms.
        self.call_latency = CallLatency()
        self.changes.subscribe(self._forget_routes)

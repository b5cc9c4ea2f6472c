"""The facade's gateway clients: who is connected now, and what each client called."""

from __future__ import annotations

from datetime import datetime

from app.core.clients import ClientDetail, ClientFigures, ClientsReport, ClientTool, GatewaySession
from app.core.errors import NotFound
from app.core.periods import DEFAULT_PERIOD
from app.ops.analytics import AnalyticsOperations
from app.runtime.gateway_sessions import GatewaySessions
from storage.client_usage import ClientUsage, usage_by_client, usage_of_client_tools

TOP_CLIENT_TOOLS = 10


class ClientOperations(AnalyticsOperations):
    """The gateway's sessions (memory) with each client's usage (the raw rows)."""

    gateway_sessions: GatewaySessions

    async def clients(
        self,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ClientsReport:
        start, end = await self._client_window(period, start, end)
        sessions = self.gateway_sessions.snapshot()
        usage = await usage_by_client(self.db, start, end)
        connected = _sessions_by_client(sessions)
        names = sorted(
            set(usage) | set(connected),
            key=lambda name: (name not in connected, -usage.get(name, ClientUsage()).calls, name),
        )
        return ClientsReport(
            gateway_running=self.gateway_sessions.running,
            sessions=sessions,
            clients=[
                _figures(name, usage.get(name, ClientUsage()), len(connected.get(name, ())))
                for name in names
            ],
            period_start=start,
            period_end=end,
        )

    async def client_detail(
        self,
        name: str,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ClientDetail:
        start, end = await self._client_window(period, start, end)
        sessions = [s for s in self.gateway_sessions.snapshot() if s.client_name == name]
        by_tool = await usage_of_client_tools(self.db, name, start, end)
        if not by_tool and not sessions:
            raise NotFound(f"no client {name!r} is connected now or called a tool in the window")
        total = ClientUsage()
        for part in by_tool.values():
            total.add(part)
        ranked = sorted(by_tool.items(), key=lambda item: (-item[1].calls, item[0][1]))
        return ClientDetail(
            gateway_running=self.gateway_sessions.running,
            figures=_figures(name, total, len(sessions)),
            sessions=sessions,
            tools=[
                ClientTool(
                    server_name=server,
                    tool_name=tool,
                    calls=part.calls,
                    errors=part.errors,
                    p95_response_time_ms=part.p95_ms,
                    last_called=part.last_called,
                )
                for (server, tool), part in ranked[:TOP_CLIENT_TOOLS]
            ],
            period_start=start,
            period_end=end,
        )

    async def _client_window(
        self, period: str, start: datetime | None, end: datetime | None
    ) -> tuple[datetime, datetime]:
        window = self._analytics_window(period, start, end)
        await self._flush_usage()
        return window.start, window.end


def _sessions_by_client(sessions: list[GatewaySession]) -> dict[str, list[GatewaySession]]:
    found: dict[str, list[GatewaySession]] = {}
    for session in sessions:
        if session.client_name is not None:
            found.setdefault(session.client_name, []).append(session)
    return found


def _figures(name: str, usage: ClientUsage, sessions: int) -> ClientFigures:
    return ClientFigures(
        client_name=name,
        calls=usage.calls,
        errors=usage.errors,
        refused=usage.refused,
        error_rate=usage.errors / usage.calls if usage.calls else None,
        p95_response_time_ms=usage.p95_ms,
        last_called=usage.last_called,
        sessions=sessions,
    )

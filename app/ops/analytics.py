"""The facade's usage analytics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from app.core.errors import InvalidInput
from app.core.periods import DEFAULT_BUCKETS, DEFAULT_PERIOD, MAX_BUCKETS
from app.core.schemas import (
    ToolMetrics,
    ToolServerAnalytics,
    ToolServerMetrics,
    UsageFigures,
    UsageTimeSeries,
)
from app.ops.servers import ServerOperations
from storage.analytics import UsageAnalytics
from storage.windows import UnknownPeriod, Window, WindowError, make_window

logger = logging.getLogger(__name__)


class AnalyticsOperations(ServerOperations):
    """Usage figures over any window."""

    # ---- analytics ---------------------------------------------------------------------
    # A window is a period (1h, 24h, 7d, 30d, 90d) up to now, or an explicit start and end.
    # Calls still queued in this process's recorder are written first, so an answer counts
    # every call made before it was asked.

    async def server_metrics(
        self,
        ref: str,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolServerMetrics:
        window = self._analytics_window(period, start, end)
        server = await self.get_server(ref)
        await self._flush_usage()
        return await self._analytics().server_metrics(server.id, window)

    async def tool_metrics(
        self,
        tool_ref: str,
        server_ref: str | None = None,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolMetrics:
        window = self._analytics_window(period, start, end)
        tool = await self.get_tool(tool_ref, server_ref)
        await self._flush_usage()
        return await self._analytics().tool_metrics(tool.id, window)

    async def analytics(
        self,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolServerAnalytics:
        window = self._analytics_window(period, start, end)
        await self._flush_usage()
        return await self._analytics().system(window)

    async def time_series(
        self,
        server_ref: str | None = None,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
        buckets: int = DEFAULT_BUCKETS,
    ) -> UsageTimeSeries:
        window = self._analytics_window(period, start, end)
        if not 1 <= buckets <= MAX_BUCKETS:
            raise InvalidInput(f"use a number from 1 to {MAX_BUCKETS}", field="buckets")
        server_id = (await self.get_server(server_ref)).id if server_ref is not None else None
        await self._flush_usage()
        return await self._analytics().time_series(server_id, window, buckets)

    async def servers_figures(
        self,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[UsageFigures]:
        window = self._analytics_window(period, start, end)
        await self._flush_usage()
        return await self._analytics().servers_figures(window)

    async def tools_figures(
        self,
        server_ref: str,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[UsageFigures]:
        window = self._analytics_window(period, start, end)
        server = await self.get_server(server_ref)
        await self._flush_usage()
        return await self._analytics().tools_figures(server.id, window)

    def _analytics(self) -> UsageAnalytics:
        return UsageAnalytics(
            self.db,
            raw_retention_days=self.settings.tool_server_usage_retention_days,
            failing_error_rate=self.settings.failing_tool_error_rate,
            failing_min_calls=self.settings.failing_tool_min_calls,
        )

    @staticmethod
    def _analytics_window(
        period: str | None, start: datetime | None, end: datetime | None
    ) -> Window:
        try:
            return make_window(period, start, end, now=datetime.now(UTC))
        except UnknownPeriod as exc:
            raise InvalidInput(str(exc), field="period") from None
        except WindowError as exc:
            raise InvalidInput(str(exc), field=exc.field) from None

    async def _flush_usage(self) -> None:
        flush = getattr(self.recorder, "flush", None)
        if flush is None:
            return
        try:
            await flush()
        except Exception:
            # What is committed is still worth answering with; the recorder retries the rest.
            logger.warning("could not write queued usage before answering", exc_info=True)

"""The live tables reuse an unchanged row's cells: a refresh of a thousand rows renders the few
that changed, and only the cells that move with the clock of the others."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.app import App, ComposeResult

from widgets.server_table import ServerRow, ServerTable

START = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)


class TableApp(App[None]):
    def __init__(self, table: ServerTable) -> None:
        super().__init__()
        self.table = table

    def compose(self) -> ComposeResult:
        yield self.table


def rows() -> list[ServerRow]:
    return [
        ServerRow(
            key=f"id-{index}",
            name=f"srv-{index}",
            status="running",
            enabled=True,
            tools_enabled=3,
            tools_total=3,
            calls=10 * index,
            errors=index,
            last_health_check=START - timedelta(minutes=1, seconds=index),
            up_since=START - timedelta(hours=2),
        )
        for index in range(3)
    ]


def shown(table: ServerTable, key: str, column: str) -> str:
    return table.get_cell(key, column).plain


async def test_unchanged_rows_keep_their_cells_and_only_ages_move() -> None:
    now = [START]
    table = ServerTable(clock=lambda: now[0])
    updates: list[tuple[str, str]] = []
    async with TableApp(table).run_test(size=(120, 10)) as pilot:
        table.sync(rows())
        await pilot.pause()
        real_update = table.update_cell

        def counted(row_key: Any, column_key: Any, value: Any, **kwargs: Any) -> None:
            updates.append((str(row_key), str(column_key)))
            real_update(row_key, column_key, value, **kwargs)

        table.update_cell = counted  # type: ignore[method-assign]
        rendered: list[str] = []
        real_render = table.render_cells

        def whole_row(row: ServerRow, at: datetime) -> Any:
            rendered.append(row.key)
            return real_render(row, at)

        table.render_cells = whole_row  # type: ignore[method-assign]
        table.sync(rows())  # equal models, new objects, the same minute
        assert updates == [] and rendered == []

        now[0] = START + timedelta(minutes=2)
        table.sync(rows())
        assert {column for _, column in updates} == {"checked", "uptime"}
        assert shown(table, "id-0", "checked") == "3m"

        updates.clear()
        changed = rows()
        changed[1] = replace(changed[1], calls=999)
        table.sync(changed)
        assert rendered == ["id-1"]  # the one changed row alone is rendered whole
        assert updates == [("id-1", "calls")]
        assert shown(table, "id-1", "calls") == "999"

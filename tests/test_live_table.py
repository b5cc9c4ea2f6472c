"""The live tables reuse an unchanged row's cells: a refresh of a thousand rows renders the few
that changed, and only the cells that move with the clock of the others."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable

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
    async with TableApp(table).run_test(size=(120, 10)) as pilot:
        table.sync(rows())
        await pilot.pause()
        rendered: list[str] = []
        real_render = table.render_cells

        def whole_row(row: ServerRow, at: datetime) -> Any:
            rendered.append(row.key)
            return real_render(row, at)

        table.render_cells = whole_row  # type: ignore[method-assign]
        before = cells(table)
        table.sync(rows())  # equal models, new objects, the same minute
        assert written(before, table) == [] and rendered == []

        now[0] = START + timedelta(minutes=2)
        before = cells(table)
        table.sync(rows())
        assert {column for _, column in written(before, table)} == {"checked", "uptime"}
        assert shown(table, "id-0", "checked") == "3m"

        changed = rows()
        changed[1] = replace(changed[1], calls=999)
        before = cells(table)
        table.sync(changed)
        assert rendered == ["id-1"]  # the one changed row alone is rendered whole
        assert written(before, table) == [("id-1", "calls")]
        assert shown(table, "id-1", "calls") == "999"


def many_rows(count: int, calls: int = 0) -> list[ServerRow]:
    return [
        replace(rows()[0], key=f"id-{index:03}", name=f"srv-{index:03}", calls=calls)
        for index in range(count)
    ]


async def test_a_changed_row_is_repainted_where_it_shows_after_scrolling() -> None:
    """Only the changed rows are repainted (not the whole table): the line on screen is the
    right one, below the header and with the table scrolled, and the others keep theirs."""
    table = ServerTable(clock=lambda: START)
    async with TableApp(table).run_test(size=(80, 12)) as pilot:
        table.sync(many_rows(100))
        await pilot.pause()
        table.focus()
        await pilot.press("end")
        table.move_cursor(row=50, animate=False)
        await pilot.pause()
        top = round(table.scroll_offset.y)
        assert top > 40
        fresh = many_rows(100)
        for index in (top + 2, top + 5):
            fresh[index] = replace(fresh[index], calls=4242)
        fresh[2] = replace(fresh[2], calls=777)  # out of sight
        table.sync(fresh)
        await pilot.pause()
        lines = screen_lines(pilot.app)
        for index in (top + 2, top + 5):
            # The header is line 0 and the first row in sight line 1.
            assert f"srv-{index:03}" in lines[1 + index - top] and "4242" in lines[1 + index - top]
        assert sum("4242" in line for line in lines) == 2
        table.move_cursor(row=0, animate=False)
        await pilot.pause()
        assert "777" in screen_lines(pilot.app)[1 + 2]


def screen_lines(app: App[None]) -> list[str]:
    """The text on screen, line by line, as the terminal shows it."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def cells(table: ServerTable) -> dict[tuple[str, str], Any]:
    return {
        (str(row.value), str(column.value)): table.get_cell(row, column)
        for row in table.rows
        for column in table.columns
    }


def written(before: dict[tuple[str, str], Any], table: ServerTable) -> list[tuple[str, str]]:
    """The cells given a new value since `before` (an unchanged cell keeps its object)."""
    return [place for place, cell in cells(table).items() if before[place] is not cell]


async def test_a_repainted_row_renders_only_its_changed_cells_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row repainted after one of its cells changed reuses the rendered lines of the others;
    the changed cell is rendered from its new value."""
    table = ServerTable(clock=lambda: START)
    async with TableApp(table).run_test(size=(100, 12)) as pilot:
        table.sync(many_rows(5))
        await pilot.pause()
        rendered: list[tuple[int, int]] = []
        real = DataTable._render_cell

        def counted(self: DataTable[Any], row: int, column: int, *args: Any, **kw: Any) -> Any:
            rendered.append((row, column))
            return real(self, row, column, *args, **kw)

        monkeypatch.setattr(DataTable, "_render_cell", counted)
        fresh = many_rows(5)
        fresh[3] = replace(fresh[3], calls=4321)
        table.sync(fresh)
        await pilot.pause()
        calls = table.get_column_index("calls")
        assert rendered == [(3, calls)]
        assert "4321" in screen_lines(pilot.app)[1 + 3]

"""A DataTable that follows a changing list of rows without losing the reader's place.

Each refresh hands the table the full list of row models. The table diffs them by key: it
adds and removes rows, writes only the cells whose text or style changed, repaints only the
rows in sight that have such a cell, and re-sorts only when the order changed. Cursor (by row
key), scroll offset, sort, filter and marks survive every refresh; nothing is cleared and
rebuilt on a live update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Region
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

from widgets import formatting as fmt

# A rendered cell: its text and its Rich style. Compared as plain tuples, which is both cheaper
# than comparing Text objects and exact (Text equality ignores the base style).
Cell = tuple[str, str]
MARK_GLYPH = "✓"
MARK_STYLE = "bold magenta"
# Rendered cells kept per table (each visible cell in a few cursor and hover states).
CELL_LINES_KEPT = 4000


class KeyedRow(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def search_text(self) -> str: ...


RowT = TypeVar("RowT", bound=KeyedRow)


@dataclass(frozen=True)
class ColumnSpec(Generic[RowT]):
    """One column: how to render a row's cell and, when sortable, what to sort by."""

    key: str
    label: str
    width: int | None
    render: Callable[[RowT, datetime], Cell]
    sort_value: Callable[[RowT], Any] | None = None
    sort_key: str | None = None  # the shift+letter that sorts by this column
    justify: str = "left"
    # Counts and latencies sort largest first: the rows to look at come to the top.
    descending: bool = False
    # The cell moves with the clock (an age): rendered again on every refresh even when its
    # row's model is unchanged. Every other cell of an unchanged row is reused as it is.
    clocked: bool = False


def count_cell(value: int | None) -> Cell:
    return (fmt.count(value), "")


def errors_cell(value: int | None) -> Cell:
    return (fmt.count(value), "red" if value else "dim")


def millis_cell(value: float | None) -> Cell:
    return (fmt.millis(value), "" if value is not None else "dim")


def _sortable(value: Any) -> tuple[int, Any]:
    # Missing values sort after every real value, in either direction of the primary key.
    return (1, 0) if value is None else (0, value)


class KeyTable(DataTable[Text]):
    """A table of rows with the cursor keys of k9s and less users next to the arrow keys:
    every table of the dashboard moves the same way."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", id="table-down", show=False),
        Binding("k", "cursor_up", "Up", id="table-up", show=False),
        Binding("g", "scroll_top", "First row", id="table-top", show=False),
        Binding("G", "scroll_bottom", "Last row", id="table-bottom", show=False),
    ]


class LiveTable(KeyTable, Generic[RowT]):
    """Rows diffed by key; marks, filter and sort are kept on the row models, not the cells."""

    COLUMNS: ClassVar[Sequence[ColumnSpec[Any]]] = ()
    MARKABLE: ClassVar[bool] = False
    # The column (the name) that takes the width the others leave, cut with an ellipsis
    # when even that is too little; never narrower than FLEX_MIN.
    FLEX_COLUMN: ClassVar[str | None] = None
    FLEX_MIN: ClassVar[int] = 12
    # Reuse the cells of a row whose model did not change, rendering only its `clocked` ones
    # again: for tables whose every cell that depends on the clock says so.
    REUSE_UNCHANGED: ClassVar[bool] = False

    class MarksChanged(Message):
        """The set of marked rows changed (its size is shown on screen)."""

        def __init__(self, table: LiveTable[Any], marked: frozenset[str]) -> None:
            super().__init__()
            self.table = table
            self.marked = marked

        @property
        def control(self) -> LiveTable[Any]:
            return self.table

    class SortChanged(Message):
        def __init__(self, table: LiveTable[Any], column: str | None, reverse: bool) -> None:
            super().__init__()
            self.table = table
            self.column = column
            self.reverse = reverse

        @property
        def control(self) -> LiveTable[Any]:
            return self.table

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row")
        self._clock = clock or (lambda: datetime.now(UTC))
        self._models: dict[str, RowT] = {}
        self._order: list[str] = []  # every model's key, in the order it was given
        self._cells: dict[str, tuple[Cell, ...]] = {}
        # The model each row's cells were rendered from, with the marks and the name's width
        # then: a refresh that brings the same model renders only its clocked cells.
        self._rendered: dict[str, tuple[RowT, bool, int | None]] = {}
        self._clocked = tuple(index for index, spec in enumerate(self.COLUMNS) if spec.clocked)
        self._marked: set[str] = set()
        self.filter_text = ""
        self.sort_column: str | None = None
        self.sort_reverse = False
        self._specs: dict[str, ColumnSpec[RowT]] = {spec.key: spec for spec in self.COLUMNS}
        # A row the cursor goes to at the next sync that has it (a server just created).
        self._cursor_wanted: str | None = None
        self._flex_index = next(
            (index for index, spec in enumerate(self.COLUMNS) if spec.key == self.FLEX_COLUMN),
            None,
        )
        self._flex_width: int | None = None
        # Rows whose cells were written since the last repaint (see `_repaint_changed`).
        self._changed: set[str] = set()
        # Each cell's rendered lines, with the value they were rendered from (`_render_cell`).
        self._cell_lines: dict[tuple[Any, ...], tuple[object, Any]] = {}

    def on_mount(self) -> None:
        for spec in self.COLUMNS:
            self.add_column(self._header(spec), width=spec.width, key=spec.key)
        self._fit_flex_column()

    def on_resize(self) -> None:
        self._fit_flex_column()

    def _fit_flex_column(self) -> None:
        if self.FLEX_COLUMN is None or not self.size.width:
            return
        flex = self.columns[ColumnKey(self.FLEX_COLUMN)]
        others = sum(
            column.get_render_width(self) for column in self.columns.values() if column is not flex
        )
        # One cell of padding each side, and one for the vertical scrollbar whether it shows
        # or not (a width that changed as rows came and went would shift every column).
        width = max(self.FLEX_MIN, self.size.width - others - 2 * self.cell_padding - 1)
        if width != self._flex_width:
            flex.width = self._flex_width = width
            self._require_update_dimensions = True
            self._clear_caches()
            self._render_rows(self.visible_keys)
            self.refresh()

    # ---- what the screen asks of the table -------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count or not self.is_valid_row_index(self.cursor_row):
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value

    @property
    def marked(self) -> frozenset[str]:
        return frozenset(self._marked)

    def model(self, key: str) -> RowT | None:
        return self._models.get(key)

    @property
    def models(self) -> list[RowT]:
        return [self._models[key] for key in self._order]

    @property
    def visible_keys(self) -> list[str]:
        return [row.key.value or "" for row in self.ordered_rows]

    @property
    def hidden_marked(self) -> frozenset[str]:
        """Marked rows the filter hides: actions leave them alone."""
        if not self._marked or not self.filter_text:
            return frozenset()
        return frozenset(self._marked - set(self.visible_keys))

    def targets(self) -> list[str]:
        """The rows an action applies to: the marked ones in sight, else the cursor row
        (when nothing is marked at all: marks hidden by the filter are not forgotten)."""
        if self._marked:
            shown = set(self.visible_keys)
            return [key for key in self._order if key in self._marked and key in shown]
        key = self.cursor_key
        return [key] if key is not None else []

    def mark_all(self) -> None:
        """Mark every row in sight; when all are marked already, unmark them."""
        if not self.MARKABLE:
            return
        shown = self.visible_keys
        if shown and set(shown) <= self._marked:
            self._marked -= set(shown)
        else:
            self._marked |= set(shown)
        self._render_rows(shown)
        self.post_message(self.MarksChanged(self, self.marked))

    def sync(self, rows: Iterable[RowT]) -> None:
        """Show these rows: the whole current list, in its natural order."""
        self._models = {}
        self._order = []
        for row in rows:
            self._models[row.key] = row
            self._order.append(row.key)
        gone = self._marked - self._models.keys()
        if gone:
            self._marked -= gone
            self.post_message(self.MarksChanged(self, self.marked))
        self._apply()

    def move_to_when_shown(self, key: str) -> None:
        """Put the cursor on `key` now, or at the next sync that brings its row."""
        self._cursor_wanted = key
        if key in self._cells:
            self._follow_cursor(key)
            self._cursor_wanted = None

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._apply()

    def sort_by(self, column: str) -> None:
        """Sort by a column; the same column again reverses the order."""
        if column not in self._specs or self._specs[column].sort_value is None:
            return
        if self.sort_column == column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, self._specs[column].descending
        for spec in self.COLUMNS:
            self.columns[ColumnKey(spec.key)].label = self._header(spec)
        self._apply()
        self.post_message(self.SortChanged(self, self.sort_column, self.sort_reverse))

    def toggle_mark(self, key: str | None = None) -> None:
        key = key if key is not None else self.cursor_key
        if key is None or not self.MARKABLE:
            return
        if key in self._marked:
            self._marked.discard(key)
        else:
            self._marked.add(key)
        self._render_rows([key])
        self.post_message(self.MarksChanged(self, self.marked))

    def clear_marks(self) -> None:
        if not self._marked:
            return
        keys = list(self._marked)
        self._marked.clear()
        self._render_rows(keys)
        self.post_message(self.MarksChanged(self, self.marked))

    def rerender(self) -> None:
        """Re-render every visible row (the clock moved: relative times changed)."""
        self._render_rows(self.visible_keys)

    # ---- rendering --------------------------------------------------------------------------

    def render_cells(self, row: RowT, now: datetime) -> tuple[Cell, ...]:
        return tuple(spec.render(row, now) for spec in self.COLUMNS)

    def _header(self, spec: ColumnSpec[RowT]) -> Text:
        label = Text(spec.label, justify=spec.justify)  # type: ignore[arg-type]
        if spec.key == self.sort_column:
            label.append("▼" if self.sort_reverse else "▲", style="bold")
        return label

    def _cells_for(self, row: RowT, now: datetime) -> tuple[Cell, ...]:
        cells = self.render_cells(row, now)
        index, width = self._flex_index, self._flex_width
        if index is not None and width and len(cells[index][0]) > width:
            # Cut before the end: names that share a start (github-enterprise-production,
            # github-enterprise-staging) stay apart by their ends.
            text, style = cells[index]
            cells = (*cells[:index], (fmt.truncate_middle(text, width), style), *cells[index + 1 :])
        if self.MARKABLE and row.key in self._marked:
            # A glyph in the first column, and the name in the mark's colour: visible in
            # 16 colours and without colour at all.
            first = (MARK_GLYPH + cells[0][0][1:], MARK_STYLE)
            index = self.UNIQUE_COLUMN_INDEX
            name = (cells[index][0], MARK_STYLE)
            cells = tuple(
                first if i == 0 else name if i == index else cell for i, cell in enumerate(cells)
            )
        return cells

    def _to_text(self, cell: Cell, spec: ColumnSpec[RowT]) -> Text:
        return Text(
            cell[0],
            style=cell[1],
            justify=spec.justify,  # type: ignore[arg-type]
            no_wrap=True,
            overflow="ellipsis",
            end="",
        )

    def _wanted(self) -> list[str]:
        needle = self.filter_text.lower()
        keys = [key for key in self._order if not needle or needle in self._models[key].search_text]
        if self.sort_column is not None:
            spec = self._specs[self.sort_column]
            assert spec.sort_value is not None
            value = spec.sort_value
            keys.sort(
                key=lambda key: _sortable(value(self._models[key])), reverse=self.sort_reverse
            )
            if self.sort_reverse:
                # Keep missing values last when reversed as well.
                keys.sort(key=lambda key: value(self._models[key]) is None)
        return keys

    def _apply(self) -> None:
        wanted = self._wanted()
        wanted_set = set(wanted)
        cursor_key = self.cursor_key
        now = self._clock()
        with self.app.batch_update():
            stale = [row_key for row_key in self.rows if row_key.value not in wanted_set]
            if stale and len(stale) > len(self.rows) // 2:
                # Many removals at once (a new filter): one clear is cheaper than n removals,
                # each of which reindexes the whole table.
                self.clear()
                self._cells.clear()
                self._rendered.clear()
            else:
                for row_key in stale:
                    self.remove_row(row_key)
                    self._cells.pop(row_key.value or "", None)
                    self._rendered.pop(row_key.value or "", None)
            for key in wanted:
                cells = self._cells_again(key, now)
                if key not in self._cells:
                    self.add_row(
                        *(self._to_text(c, s) for c, s in zip(cells, self.COLUMNS, strict=True)),
                        key=key,
                    )
                else:
                    self._update_row(key, cells)
                self._cells[key] = cells
            if self.visible_keys != wanted:
                # DataTable sorts by cell values alone, without row keys; each row's first
                # cell is an object of its own, so its identity says which row it is (a name
                # cut to fit may read the same as another).
                first = self.COLUMNS[0].key
                position = {
                    id(self.get_cell(key, first)): index for index, key in enumerate(wanted)
                }
                self.sort(first, key=lambda cell: position[id(cell)])
            wanted_key = self._cursor_wanted
            if wanted_key is not None and wanted_key in self._models:
                # Once the row is known the wish is spent, in sight or hidden by the filter.
                self._cursor_wanted = None
                if wanted_key in wanted_set:
                    cursor_key = wanted_key
            self._repaint_changed()
            self._follow_cursor(cursor_key)

    # The name column: in the mark's colour on a marked row.
    UNIQUE_COLUMN_INDEX: ClassVar[int] = 1

    def _update_row(self, key: str, cells: tuple[Cell, ...]) -> None:
        old = self._cells[key]
        if old == cells:
            return
        # Written into DataTable's store rather than through `update_cell`, which repaints the
        # whole table for each cell: `_repaint_changed` repaints the rows written, once.
        stored = self._data[RowKey(key)]
        for spec, before, after in zip(self.COLUMNS, old, cells, strict=True):
            if before != after:
                stored[ColumnKey(spec.key)] = self._to_text(after, spec)
        self._changed.add(key)

    def _repaint_changed(self) -> None:
        """Repaint the rows in sight whose cells changed, and nothing else.

        A whole-table repaint renders every visible cell again (DataTable keys its render
        caches on one table-wide counter): ~25 ms at 36 rows, while a live refresh changes a
        few rows. A row left alone keeps the lines already drawn for it.
        """
        if not self._changed:
            return
        changed, self._changed = self._changed, set()
        self._update_count += 1  # DataTable's row and line caches are keyed on it
        top = self.header_height if self.show_header else 0
        width = max(self.size.width, self.virtual_size.width)
        for key in changed:
            try:
                index = self.get_row_index(key)
            except RowDoesNotExist:
                continue
            # Every row of a live table is one line high: its line is its index below the header.
            line = Region(0, top + index, width, 1)
            if self.window_region.overlaps(line):
                self.refresh(line.translate(-self.scroll_offset))

    def _cells_again(self, key: str, now: datetime) -> tuple[Cell, ...]:
        """A row's cells for this refresh: a thousand rows of which a few changed cost a few
        renders and the clocked cells, not a thousand full renders."""
        model = self._models[key]
        state = self._render_state(key, model)
        old = self._cells.get(key)
        if old is None or not self.REUSE_UNCHANGED or self._rendered.get(key) != state:
            self._rendered[key] = state
            return self._cells_for(model, now)
        if not self._clocked:
            return old
        cells = list(old)
        for index in self._clocked:
            cells[index] = self.COLUMNS[index].render(model, now)
        return tuple(cells)

    def _render_state(self, key: str, model: RowT) -> tuple[RowT, bool, int | None]:
        return (model, self.MARKABLE and key in self._marked, self._flex_width)

    def _render_rows(self, keys: Iterable[str]) -> None:
        now = self._clock()
        with self.app.batch_update():
            for key in keys:
                model = self._models.get(key)
                if model is None or key not in self._cells:
                    continue
                cells = self._cells_for(model, now)
                self._update_row(key, cells)
                self._cells[key] = cells
                self._rendered[key] = self._render_state(key, model)
            self._repaint_changed()

    # ---- DataTable's cell render, kept per cell (textual is pinned: these are its internals) ----

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> Any:
        """A cell's lines, rendered again only when its value or looks changed.

        DataTable keeps rendered cells under its table-wide update counter, which every
        change moves: a row repainted after one cell changed rendered all its cells again.
        """
        if row_index < 0 or column_index < 0:  # the header and row labels: DataTable's own
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        value = self._data[row_key][column_key]
        key = (
            row_key,
            column_key,
            row_index,  # in the cell's style, for the mouse
            column_index,
            base_style,
            width,
            cursor,
            hover,
            self.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        kept = self._cell_lines.get(key)
        if kept is not None and kept[0] is value:
            return kept[1]
        lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if len(self._cell_lines) >= CELL_LINES_KEPT:
            self._cell_lines.clear()
        self._cell_lines[key] = (value, lines)
        return lines

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._cell_lines.clear()

    def notify_style_update(self) -> None:
        self._cell_lines.clear()  # a theme or a class changed the cells' looks
        super().notify_style_update()

    def _follow_cursor(self, key: str | None) -> None:
        if key is None or not self.row_count:
            return
        try:
            index = self.get_row_index(key)
        except RowDoesNotExist:
            return
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)

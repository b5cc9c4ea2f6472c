"""Reading events and logs whole: a message longer than its column, a line wider than the
screen, and a search that says what it covers."""

from __future__ import annotations

from textual.widgets import DataTable, RichLog, Select, Static

from app.core.events import EventKind
from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.screens.events import EventDetailScreen, EventsScreen
from app.tui.screens.log import LOG_LINES, LogScreen
from storage.queries import add_event
from tests.test_tui_screens import rendered
from tests.tui_helpers import add_servers, drawn_lines, make_app, settle
from widgets.status_bar import StatusBar


def drawn(log: RichLog) -> str:
    return "".join(drawn_lines(log))


LONG = "the server exited during start-up; last stderr: " + "x" * 150 + " THE-END"


async def test_k_moves_up_and_t_chooses_the_kind(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha", "beta", "gamma")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        table = screen.query_one("#events-table", DataTable)
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1 and table.has_focus  # k is up, not the kind filter
        await pilot.press("t")
        assert isinstance(app.focused, Select) and app.focused.id == "events-kind-filter"


async def test_enter_reads_an_event_whole(settings: Settings, ops: LocalOperations) -> None:
    (server_id,) = await add_servers(ops, "alpha")
    async with ops.db.session() as session:
        add_event(session, server_id, EventKind.START_FAILED, LONG, "system")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        await pilot.press("enter")  # the newest: the failed start
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, EventDetailScreen)
        text = rendered(detail.query_one("#event-detail", Static).content, width=100)
        assert "THE-END" in text and "start_failed" in text and "alpha" in text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, EventsScreen)


async def test_w_wraps_long_log_lines_and_search_says_what_it_covers(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha")
    log_file = settings.logs_dir / "alpha.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(f"starting\n{LONG}\nready\n")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, LogScreen)
        log = screen.query_one(RichLog)
        assert len(log.lines) == 3
        assert "THE-END" not in drawn(log)  # cut at the screen's edge
        await pilot.press("w")
        await settle(pilot)
        assert len(log.lines) > 3
        assert "THE-END" in drawn(log)
        await pilot.press("slash", *"start", "enter")
        await settle(pilot)
        title = screen.query_one(StatusBar).state.title  # type: ignore[union-attr]
        assert "2 in the last 3 lines" in title, title
        assert f"last {LOG_LINES} lines" in str(screen.query_one("#log-search-box").placeholder)  # type: ignore[attr-defined]

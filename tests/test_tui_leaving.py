"""How the dashboard leaves: `q`, or an unexpected error; where its log lines go meanwhile.

An error nobody handled ends the app with status 1 after the servers it ran are stopped and
their state recorded, as `q` does; the traceback goes to the dashboard's log file, and one line
naming that file is all the terminal gets. While the dashboard has the screen, no log line is
written to the terminal.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading

import pytest
from textual.widgets import Input, Static, TextArea

from app.core.logfile import dashboard_log_path, logging_to_file
from app.core.settings import Settings
from app.ops.bootstrap import running_core
from app.ops.facade import LocalOperations
from app.tui.screens.main import MainScreen
from app.tui.screens.tool_call import ToolCallScreen
from storage.db import Database
from tests.conftest import stdio_server_spec
from tests.runtime_helpers import events_of, eventually, gone
from tests.test_tui_screens import add_tools
from tests.tui_helpers import PseudoTerminal, add_servers, make_app, notices, settle


async def test_form_and_json_switch_back_and_forth_keeping_the_arguments(
    settings: Settings, ops: LocalOperations
) -> None:
    """`ctrl+j` twice on the call screen crashed the app (a second form with the same id)."""
    await add_servers(ops, "alpha")
    await add_tools(ops, "alpha", "scale")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("tab", "c")
        await settle(pilot)
        call = app.screen
        assert isinstance(call, ToolCallScreen)
        await pilot.press("7")
        for _ in range(2):
            await pilot.press("ctrl+j")  # to JSON
            await settle(pilot)
            assert '"x": 7' in call.query_one("#call-json", TextArea).text
            await pilot.press("ctrl+j")  # and back to the form
            await settle(pilot)
            assert call.query_one("#call-form Input", Input).value == "7"
        assert app.is_running and app.return_code is None


async def test_an_unexpected_error_stops_the_servers_and_exits_1(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_screen: MainScreen) -> None:
        raise RuntimeError("a bug in a key handler")

    monkeypatch.setattr(MainScreen, "action_analytics", broken)
    with logging_to_file(settings) as log_file:
        app = make_app(settings, None, core=running_core)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="a bug in a key handler"):
            async with app.run_test(size=(120, 36)) as pilot:

                async def calculator_pid() -> int | None:
                    ops = app.ops
                    if ops is None or (await ops.get_server("calculator")).status != "running":
                        return None
                    return (await ops.runtime_info("calculator")).pid

                pid = await eventually(calculator_pid, within=30)
                await pilot.press("a")

                async def app_ended() -> bool:
                    return not app.is_running

                await eventually(app_ended, within=30)
    # The state left behind is true the moment the app is gone (a real run's event loop ends
    # right there): stopped, and said so by the shutdown, not by the next start.
    db = Database(settings.effective_database_url)
    try:
        stored = LocalOperations(db, settings)
        assert (await stored.get_server("calculator")).status == "stopped"
        stops = await events_of(stored, "calculator", "stopped")
        assert stops and "shut down" in stops[-1].message
    finally:
        await db.dispose()
    assert app.return_code == 1
    assert await gone(pid)
    logged = log_file.read_text()
    assert "Traceback" in logged and "a bug in a key handler" in logged
    # The terminal, given back, gets one sentence naming the log, and no traceback.
    shown = capsys.readouterr().err
    assert "Traceback" not in shown and "unexpected error" in shown
    assert str(dashboard_log_path(settings)) in shown.replace("\n", "")


def test_log_lines_go_to_the_file_and_never_to_the_terminal(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    library = logging.getLogger("some.library")
    library.addHandler(logging.StreamHandler(sys.stderr))
    try:
        with logging_to_file(settings) as log_file:
            logging.getLogger("app.runtime.usage").error("worker load_detail failed")
            library.warning("a library's own stream handler")
        assert log_file.stat().st_mode & 0o777 == 0o600
        logged = log_file.read_text()
        assert "worker load_detail failed" in logged and "own stream handler" in logged
        assert capsys.readouterr().err == ""
        # Afterwards, the library's handler is back.
        assert any(isinstance(h, logging.StreamHandler) for h in library.handlers)
    finally:
        library.handlers.clear()


def test_a_thread_s_uncaught_exception_goes_to_the_file_too(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A driver's worker thread dying at exit (its loop closed) printed its traceback over
    the terminal the dashboard had just given back."""

    def worker() -> None:
        raise RuntimeError("Event loop is closed")

    with logging_to_file(settings) as log_file:
        thread = threading.Thread(target=worker, name="a-driver-worker")
        thread.start()
        thread.join()
    logged = log_file.read_text()
    assert "uncaught exception in a-driver-worker" in logged and "Event loop is closed" in logged
    assert "Traceback" in logged
    assert capsys.readouterr().err == ""


async def test_esc_cancels_a_long_call_which_is_no_tool_error(settings: Settings) -> None:
    """A slow tool on a real server: the call screen counts the seconds, esc cancels the call
    (the screen stays, and says so), and the cancel is not metered as the tool's failure."""
    app = make_app(settings, None, core=running_core)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 36)) as pilot:

        async def opened() -> bool:
            return app.ops is not None

        await eventually(opened, within=30)
        ops = app.ops
        assert ops is not None
        await ops.create_server(stdio_server_spec("library", "library"), actor="test")
        await ops.start_server("library", actor="test")
        tool = await ops.get_tool("slow", "library")
        app.push_screen(ToolCallScreen(tool))
        await settle(pilot)
        call = app.screen
        assert isinstance(call, ToolCallScreen)
        await pilot.press(*"30", "ctrl+r")

        async def counting() -> bool:
            await pilot.pause()
            text = str(call.query_one("#call-result", Static).content)
            return "Calling slow" in text and "esc cancels" in text

        await eventually(counting, within=10)
        await pilot.press("escape")

        async def cancelled() -> bool:
            await settle(pilot)
            return "cancelled" in str(call.query_one("#call-result", Static).content)

        await eventually(cancelled, within=10)
        assert app.screen is call  # esc stopped the call, not the screen
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await app.action_quit()
    db = Database(settings.effective_database_url)
    try:
        view = await LocalOperations(db, settings).tool_metrics("slow", "library")
        assert (view.total_errors, view.total_cancelled) == (0, 1)
    finally:
        await db.dispose()


async def test_tooldeck_in_a_terminal_exits_1_and_keeps_the_traceback_off_it(
    settings: Settings,
) -> None:
    """The real entry point in a pseudo-terminal: status 1 after the error, the servers it
    ran stopped and recorded, the traceback in the log file and not on the terminal."""
    terminal = PseudoTerminal(
        [sys.executable, "-m", "tests.crashing_dashboard", str(settings.data_dir)],
        env={"MCP_SERVERS": "calculator"},
    )
    try:
        # Generous waits: a loaded machine takes its time to start Python, Textual and a server.
        await terminal.wait_for(b"supervising", within=90)
        db = Database(settings.effective_database_url)
        try:
            stored = LocalOperations(db, settings)

            async def calculator_running() -> bool:
                return (await stored.get_server("calculator")).status == "running"

            await eventually(calculator_running, within=90)
            terminal.send(b"a")
            assert await terminal.exit_code(within=90) == 1, terminal.text()
            assert (await stored.get_server("calculator")).status == "stopped"
        finally:
            await db.dispose()
    finally:
        terminal.close()
    shown = terminal.text()
    assert "unexpected error" in shown and "Traceback" not in shown, shown[-2000:]
    assert "a bug in a key handler" in dashboard_log_path(settings).read_text()


async def test_a_busy_database_is_told_in_words_not_in_the_driver_s(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds SQLite's write lock: disabling a server fails, and the notice says
    so in a sentence, without SQLAlchemy's class names, link or SQL."""
    monkeypatch.setattr("storage.db.SQLITE_BUSY_TIMEOUT_MS", 50)  # fail fast, not in 15 s
    db = Database(settings.effective_database_url)
    await db.upgrade()
    try:
        ops = LocalOperations(db, settings)
        await add_servers(ops, "alpha")
        app = make_app(settings, ops)
        async with app.run_test(size=(120, 36), notifications=True) as pilot:
            await settle(pilot)
            other_writer = sqlite3.connect(settings.data_dir / "tooldeck.db", isolation_level=None)
            try:
                other_writer.execute("BEGIN IMMEDIATE")
                await pilot.press("minus")

                async def told() -> bool:
                    await settle(pilot)
                    return any("alpha" in notice for notice in notices(app))

                await eventually(told, within=30)
            finally:
                other_writer.close()
            notice = next(notice for notice in notices(app) if "alpha" in notice)
            assert "the database was busy" in notice
            for noise in ("OperationalError", "sqlalche.me", "[SQL", "sqlite3"):
                assert noise not in notice, notice
    finally:
        await db.dispose()

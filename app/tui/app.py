"""The Tooldeck dashboard: one App over the operations facade.

The app owns the core (the facade, with the supervisor when this process runs one), the clock,
the chosen period and the read-only switch. Screens read and act through `DeckData` and the
facade, always in workers, so a hanging server or a slow query never freezes a key press.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker

from app.core.changes import Change
from app.core.errors import Unavailable
from app.core.logfile import dashboard_log_path
from app.core.periods import DEFAULT_PERIOD, PERIOD_NAMES
from app.core.schemas import AlertResponse
from app.core.settings import Settings
from app.core.stop_signals import on_stop_signals
from app.ops.attach import OperationsServer, dashboard_facade, stored_facade
from app.ops.protocol import Operations, ReadOperations
from app.ops.remote import RemoteOperations
from app.tui.base import describe_error, report_worker
from app.tui.commands import OperationsProvider
from app.tui.data import DeckData
from app.tui.heap import release_long_lived
from app.tui.messages import CoreReady, DataChanged, PeriodChanged
from app.tui.screens.help import HelpScreen
from app.tui.screens.main import MainScreen
from widgets.status_bar import AlertBadge, LinkState, StatusBar

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_S = 2.0
# How long `q` (or an unexpected error) waits for the servers to stop before leaving anyway.
CLOSE_CORE_S = 15.0
# New alerts named one by one in notifications; more are summed up in one.
ALERT_NOTICES = 3
SEVERITY_RANK = {"critical": 2, "warning": 1}
# The open facade for the app's lifetime; closing the context stops what it started.
CoreFactory = Callable[[Settings], AbstractAsyncContextManager[Operations]]


def tui_actor() -> str:
    try:
        return f"tui:{getpass.getuser()}"
    except (KeyError, OSError):
        return "tui"


@asynccontextmanager
async def given_core(ops: Operations) -> AsyncIterator[Operations]:
    """A facade someone else opened and will close (tests, benchmarks)."""
    yield ops


class TooldeckApp(App[None]):
    CSS_PATH = "tooldeck.tcss"
    TITLE = "Tooldeck"
    COMMANDS = App.COMMANDS | {OperationsProvider}
    # Narrow terminals (80 columns over SSH) drop the side panes; short ones the bottom row.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("ctrl+p", "command_palette", "Commands", key_display="^p", id="palette"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    period: reactive[str] = reactive(DEFAULT_PERIOD, init=False)

    def __init__(
        self,
        settings: Settings,
        *,
        read_only: bool = False,
        core: CoreFactory | None = None,
        serve: OperationsServer | None = None,
        ops: Operations | None = None,
        clock: Callable[[], datetime] | None = None,
        refresh_interval: float = DEFAULT_REFRESH_S,
        cursor_blink: bool = True,
        with_runtime: bool = True,
        use_reader: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.read_only = read_only
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.fixed_clock = clock is not None
        self.refresh_interval = refresh_interval
        self.cursor_blink = cursor_blink
        self.use_reader = use_reader
        self.actor = tui_actor()
        if ops is not None:
            self._core: CoreFactory = lambda _settings: given_core(ops)
        else:
            self._core = core or (
                partial(dashboard_facade, read_only=read_only, serve=serve)
                if with_runtime
                else stored_facade
            )
        self.ops: Operations | None = None
        self.data: DeckData | None = None
        self._quit_requested = asyncio.Event()
        self._core_task: asyncio.Task[None] | None = None
        # True once leaving began: failures of reads cut short by the closing core are expected.
        self.leaving = False
        # What stands behind the deck (a daemon, this process's supervisor, or only the stored
        # state) and whether it answers: on every status line, since it decides what `q` does.
        self.link = LinkState()
        # The open alerts, for every status bar; None until first read (or no alerts facade).
        self.alert_badge: AlertBadge | None = None
        self._known_alerts: set[int] | None = None
        self._alerts_worker: Worker[None] | None = None
        if read_only:
            self.sub_title = "read-only"

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen()

    def on_mount(self) -> None:
        # The core is a task of its own, not a worker: Textual cancels its workers the moment
        # its message loop ends, and servers stopped by a cancelled task leave their state
        # unrecorded. `_shutdown` closes it instead, on every way out.
        self._core_task = asyncio.create_task(self._hold_core(), name="tooldeck-core")
        self.set_interval(self.refresh_interval, self._alerts_tick, name="alerts-refresh")

    async def _hold_core(self) -> None:
        """Holds the core open for the app's lifetime, in one task.

        The supervisor's task groups must be entered and left by the same task, so the core
        lives in this task and is closed here when the app leaves.
        """
        try:
            async with self._core(self.settings) as ops, self._reader(ops) as reads:
                unsubscribe = self._follow_changes(ops)
                unsubscribe_alerts = self._follow_alerts(ops)
                try:
                    self.ops = ops
                    self.data = DeckData(
                        ops,
                        self.clock,
                        fixed_clock=self.fixed_clock,
                        reads=reads,
                        reuse_servers=ops.changes is not None,
                    )
                    self.show_link(link_of(ops))
                    for screen in self.screen_stack:
                        screen.post_message(CoreReady())
                    self.read_alerts()
                    with on_stop_signals(self._stop_signalled):
                        await self._quit_requested.wait()
                finally:
                    unsubscribe_alerts()
                    unsubscribe()
        except Exception as error:
            logger.exception("the dashboard could not open its data")
            if self.ops is None:
                self.notify(
                    f"The dashboard could not open its data: {describe_error(error)}",
                    title="Failed",
                    severity="error",
                    timeout=30,
                    markup=False,
                )

    def _stop_signalled(self, signum: signal.Signals) -> None:
        """SIGTERM, SIGINT and SIGHUP (the SSH session gone) quit as `q` does: the servers this
        dashboard runs are stopped and their statuses left true. After a hang-up there is no
        terminal left: output is dropped, as Textual's writer would block on it for ever."""
        if signum == signal.SIGHUP and self._driver is not None:
            self._driver.write = lambda _data: None  # type: ignore[method-assign]
        self.call_later(self.action_quit)

    def _reader(self, ops: Operations) -> AbstractAsyncContextManager[ReadOperations]:
        """Where the heavy reads go: the facade's reader thread, unless asked to stay here."""
        return ops.open_reader() if self.use_reader else nullcontext(ops)

    def _follow_changes(self, ops: Operations) -> Callable[[], None]:
        bus = ops.changes
        if bus is None:  # a remote facade: the refresh tick is all there is
            return lambda: None
        app_thread = threading.get_ident()

        def changed(_change: Change, _server_id: str | None) -> None:
            if self.data is not None:
                self.data.servers_changed()  # at once, from any thread: a refresh may be under way
            if threading.get_ident() == app_thread:
                self._announce_change()
            else:
                self.call_from_thread(self._announce_change)

        unsubscribe: Callable[[], None] = bus.subscribe(changed)
        return unsubscribe

    def _announce_change(self) -> None:
        for screen in self.screen_stack:
            screen.post_message(DataChanged())

    # ---- alerts: the count on every status bar, a notification for each new one -------------

    def _follow_alerts(self, ops: Operations) -> Callable[[], None]:
        """In-process, the alert engine says when an alert is raised; attached to a daemon
        there is no engine here, and the refresh tick's read finds new ones."""
        feed = ops.alerts
        if feed is None:
            return lambda: None
        app_thread = threading.get_ident()

        def raised(alert: AlertResponse) -> None:
            if threading.get_ident() == app_thread:
                self._alert_raised(alert)
            else:
                self.call_from_thread(self._alert_raised, alert)

        return feed.subscribe(raised)

    def _alert_raised(self, alert: Any) -> None:
        if self._known_alerts is not None and alert.id not in self._known_alerts:
            self._known_alerts.add(alert.id)
            self._notify_alerts([alert])
        self.read_alerts()

    def _alerts_tick(self) -> None:
        if self.data is not None and (
            self._alerts_worker is None or self._alerts_worker.is_finished
        ):
            self.read_alerts()

    def read_alerts(self) -> None:
        """Read the open alerts now (after an acknowledgement, a new alert, the tick)."""
        if self.data is not None:
            self._alerts_worker = self.load_alerts()

    @work(exclusive=True, group="alerts", exit_on_error=False)
    async def load_alerts(self) -> None:
        data = self.data
        if data is None:
            return
        alerts = await data.reads.list_alerts()
        self.daemon_answered()
        self.show_alerts(alerts)

    def show_alerts(self, alerts: list[Any]) -> None:
        ids = {alert.id for alert in alerts}
        if self._known_alerts is not None:
            fresh = [alert for alert in alerts if alert.id not in self._known_alerts]
            if fresh:
                self._notify_alerts(fresh)
            self._known_alerts |= ids
        else:  # the first read: what is open already is shown by the count, not announced
            self._known_alerts = set(ids)
        # An acknowledged alert stays open (on the alerts screen) but needs nobody any more.
        waiting = [alert for alert in alerts if not alert.acknowledged_by]
        worst = max(
            (alert.severity for alert in waiting),
            key=lambda severity: SEVERITY_RANK.get(severity, 0),
            default="warning",
        )
        badge = AlertBadge(count=len(waiting), severity=worst)
        if badge == self.alert_badge:
            return
        self.alert_badge = badge
        for screen in self.screen_stack:
            for bar in screen.query(StatusBar):
                bar.show_alerts(badge)

    def _notify_alerts(self, alerts: list[Any]) -> None:
        for alert in alerts[:ALERT_NOTICES]:
            self.notify(
                alert.message,
                title=f"Alert · {alert.rule}",
                severity="error" if alert.severity == "critical" else "warning",
                timeout=10,
                markup=False,
            )
        if len(alerts) > ALERT_NOTICES:
            self.notify(
                f"and {len(alerts) - ALERT_NOTICES} more new alerts (!)",
                title="Alerts",
                severity="warning",
                timeout=10,
            )

    @property
    def core_ready(self) -> bool:
        return self.data is not None

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker(self, event.worker)

    # ---- the link: a daemon, this process's supervisor, or the stored state only ------------

    def show_link(self, link: LinkState) -> None:
        if link == self.link:
            return
        self.link = link
        for screen in self.screen_stack:
            screen.set_class(link.unreachable, "-stale")
            for bar in screen.query(StatusBar):
                bar.show_link(link)

    def daemon_unreachable(self, error: Unavailable) -> None:
        """A read to the daemon failed: one lasting state on the top line, figures greyed,
        and the refresh tick keeps trying (no notification per failed read)."""
        if not self.link.unreachable:
            logger.warning("the daemon does not answer: %s", error)
        self.show_link(self.link.but(unreachable=True))

    def daemon_answered(self) -> None:
        if self.link.unreachable:
            logger.info("the daemon answers again")
            self.show_link(self.link.but(unreachable=False))

    def push_screen(self, screen: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(screen, Screen):
            screen.set_class(self.link.unreachable, "-stale")
        return super().push_screen(screen, *args, **kwargs)

    # ---- leaving: `q`, an unexpected error, the end of the app; one way out for all ---------

    async def action_quit(self) -> None:
        """Close the core (stopping servers this process runs) before leaving."""
        if self.ops is not None and self.link.mode == "supervising":
            self.notify("Stopping the servers…", timeout=CLOSE_CORE_S)
        await self.close_core()
        self.exit()

    async def close_core(self) -> None:
        """Close the core and wait for it: the servers this process runs are stopped and their
        state recorded. Never raises and never waits past CLOSE_CORE_S: leaving always works."""
        self.leaving = True
        self._quit_requested.set()
        task = self._core_task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=CLOSE_CORE_S)
        except TimeoutError:
            logger.warning("the core did not close within %.0f s; leaving anyway", CLOSE_CORE_S)
            task.cancel()
        except BaseException:  # quitting must always work; the task logged its own failure
            logger.warning("closing the core failed", exc_info=True)

    async def _shutdown(self) -> None:
        # Textual's own shutdown, which every way out ends in, after the core is closed.
        await self.close_core()
        await super()._shutdown()
        release_long_lived()

    def _handle_exception(self, error: Exception) -> None:
        # Before Textual's handling (exit code 1, then `_fatal_error`), while the error is at
        # hand: the whole traceback goes to the log file.
        logger.critical("the dashboard stopped on an unexpected error", exc_info=error)
        super()._handle_exception(error)

    def _fatal_error(self) -> None:
        """After an unexpected error: one line on the terminal once it is given back, naming
        the log that holds the traceback; `_shutdown` then stops the servers as `q` does."""
        error = self._exception
        what = describe_error(error) if error is not None else "unknown error"
        self._exit_renderables.append(
            Text(
                f"Tooldeck stopped on an unexpected error ({what}). The servers it ran were "
                f"stopped; the traceback is in {dashboard_log_path(self.settings)}",
                style="bold red",
            )
        )
        self._close_messages_no_wait()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(self.screen))

    def watch_period(self, period: str) -> None:
        for screen in self.screen_stack:
            screen.post_message(PeriodChanged(period))

    def set_period(self, period: str) -> None:
        if period in PERIOD_NAMES:
            self.period = period

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


def link_of(ops: Operations) -> LinkState:
    """What the facade stands for: the mode label of every status line."""
    if isinstance(ops, RemoteOperations):
        return LinkState(mode="attached", where=ops.base_url)
    return LinkState(mode="supervising" if ops.supervised else "stored")

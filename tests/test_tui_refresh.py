"""What keeps the refresh cheap at a thousand servers, and what it must still show: the heap
frozen out of the collector's full passes while the deck runs, and the fleet list not read again
in a tick that reads the usage figures, unless a change was announced."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import update

from app.core.changes import Change
from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.heap import FULL_PASS_EVERY
from app.tui.screens.main import MainScreen
from storage.models import ToolServer
from tests.test_tui_pilot import main_screen
from tests.tui_helpers import add_servers, make_app, settle


async def test_the_deck_freezes_its_heap_once_the_fleet_is_shown_and_thaws_it_on_leaving(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha", "beta")
    thresholds = gc.get_threshold()
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert main_screen(app).loaded
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[2] == FULL_PASS_EVERY != thresholds[2]
        await pilot.press("q")
        await settle(pilot)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


async def refresh_tick(screen: MainScreen, *, with_figures: bool) -> None:
    """One refresh as the timer runs it, waited for; `with_figures` makes its usage figures due
    (they are read every 10 s, most ticks reuse them)."""
    data = screen.deck.data
    assert data is not None
    if with_figures:
        data.invalidate()
    screen._tick()
    for worker in (screen._overview_worker, screen._detail_worker):
        if worker is not None:
            await worker.wait()


async def write_status(ops: LocalOperations, server_id: str, status: str) -> None:
    """A status written as another process writes it: no notice on this process's bus."""
    async with ops.db.session() as session:
        await session.execute(
            update(ToolServer).where(ToolServer.id == server_id).values(status=status)
        )


@asynccontextmanager
async def deck_of_two(
    settings: Settings, ops: LocalOperations
) -> AsyncIterator[tuple[MainScreen, str, str]]:
    """The deck over two stopped servers, loaded; then the first one's status is "error"."""
    alpha, beta = await add_servers(ops, "alpha", "beta")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await write_status(ops, alpha, "error")
        yield main_screen(app), alpha, beta


async def test_a_status_no_one_announced_shows_at_most_one_tick_late(
    settings: Settings, ops: LocalOperations
) -> None:
    async with deck_of_two(settings, ops) as (main, alpha, _beta):
        # A tick that reads the usage figures shows the list the tick before read...
        await refresh_tick(main, with_figures=True)
        assert main.servers.model(alpha).status == "stopped"
        # ...and the next one reads it again, figures due or not.
        await refresh_tick(main, with_figures=True)
        assert main.servers.model(alpha).status == "error"
        await write_status(ops, alpha, "running")
        await refresh_tick(main, with_figures=False)
        assert main.servers.model(alpha).status == "running"


async def test_an_announced_change_shows_at_the_next_tick_even_with_the_figures(
    settings: Settings, ops: LocalOperations
) -> None:
    async with deck_of_two(settings, ops) as (main, alpha, beta):
        assert ops.changes is not None
        ops.changes.publish(Change.STATUS, alpha)  # as the supervisor does
        await refresh_tick(main, with_figures=True)  # before the refresh the notice asks for
        assert main.servers.model(alpha).status == "error"
        # A server added and one deleted through the facade, in a tick that reads figures.
        await refresh_tick(main, with_figures=False)
        gamma = (await ops.create_server({"name": "gamma", "command": "true"}, actor="t")).id
        await ops.delete_server(alpha, actor="t")
        await refresh_tick(main, with_figures=True)
        assert set(main.servers.visible_keys) == {beta, gamma}

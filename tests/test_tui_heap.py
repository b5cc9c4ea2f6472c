"""The dashboard keeps its long-lived objects out of the collector's full passes, and makes those
passes rarer, while it runs; it leaves the collector as it found it."""

from __future__ import annotations

import gc

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.heap import FULL_PASS_EVERY
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

"""The dashboard's long-lived objects, kept out of the garbage collector's full passes.

Once a thousand servers are on screen the process holds some 300,000 objects that live as long
as it does: the widgets, the facade's engines and mappers, the table's cells. Every refresh
makes and drops thousands of models, so a full collection came every few seconds, and each
walked all of them: 100-200 ms holding the interpreter, on whichever thread ran it. That was
the slowest refresh of a run, and a key press landing in it. Frozen after the first full paint,
those objects are no longer walked (a full pass takes 15-45 ms); they are still freed by their
reference counts, and given back to the collector when the dashboard leaves, so a process that
runs the dashboard more than once (the tests) collects what each left.
"""

from __future__ import annotations

import gc

# Full passes once every this many middle-generation ones (Python's default is 10). What a
# refresh leaves is freed by reference counts; the few cycles it makes wait longer for a full
# pass, and a full pass every few refreshes (15-45 ms) no longer lands in one in three of them.
FULL_PASS_EVERY = 100

_thresholds: tuple[int, int, int] | None = None


def settle_long_lived() -> None:
    """Leave what exists now out of full collections (once; later calls do nothing)."""
    global _thresholds
    if _thresholds is not None:
        return
    _thresholds = gc.get_threshold()
    # A collection first, so that garbage of the start-up is not kept for the process's life.
    gc.collect()
    gc.freeze()
    young, middle, _full = _thresholds
    gc.set_threshold(young, middle, FULL_PASS_EVERY)


def release_long_lived() -> None:
    """Give the frozen objects back to the collector, as it was (the dashboard is leaving)."""
    global _thresholds
    if _thresholds is None:
        return
    gc.set_threshold(*_thresholds)
    _thresholds = None
    gc.unfreeze()

"""The dashboard's long-lived objects, kept out of the garbage collector's full passes.

Once a thousand servers are on screen the process holds some 300,000 objects that live as long
as it does: the widgets, the facade's engines and mappers, the table's cells. Every refresh
makes and drops thousands of models, so a full collection comes every few seconds, and each
walked all of them: 100-200 ms holding the interpreter, on whichever thread ran it. That was
the slowest refresh of a run, and a key press landing in it. Frozen after the first full paint,
those objects are no longer walked (a full pass takes 15-45 ms); they are still freed by their
reference counts, and given back to the collector when the dashboard leaves, so a process that
runs the dashboard more than once (the tests) collects what each left.
"""

from __future__ import annotations

import gc

_frozen = False


def settle_long_lived() -> None:
    """Leave what exists now out of full collections (once; later calls do nothing)."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    # A collection first, so that garbage of the start-up is not kept for the process's life.
    gc.collect()
    gc.freeze()


def release_long_lived() -> None:
    """Give the frozen objects back to the collector (the dashboard is leaving)."""
    global _frozen
    if not _frozen:
        return
    _frozen = False
    gc.unfreeze()

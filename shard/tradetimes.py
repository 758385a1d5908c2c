"""When each trade happened, by the clock of the leader that sequenced it.

ENGINE.md lists a user's fills "in the order they happened, across markets".
Inside one engine that is the order of seqs; here each market is its own
replica group with its own seqs, so the groups must agree on something they
can compare. The leader puts its wall-clock time (microseconds since the
epoch) at the head of every batch it proposes (:data:`shard.proposals.STAMP`);
the state machine keeps the latest such time, never letting it go back (a new
leader's clock may be behind the old one's), and every trade is given the
time of the entry that made it. Because the time is in the log, every
replica of a market gives a trade the same time; a fills query that names no
market merges the markets' fills by it (``gateway.routing.merge_fills``).

Trades made in one batch share its time, so the times are kept run-length
encoded: per market, the first trade id of each run and the run's time.
A trade made before this existed (a data directory from an older version)
has time 0.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from typing import Any


class _Runs:
    """One market's runs: ``starts[i]`` is the first trade id with ``times[i]``."""

    __slots__ = ("last", "starts", "times")

    def __init__(self) -> None:
        self.starts: array[int] = array("q")
        self.times: array[int] = array("q")
        self.last = 0  # the highest trade id with a time


class TradeTimes:
    """Trade id -> leader time (µs), per market; deterministic state of a replica."""

    def __init__(self) -> None:
        self._markets: dict[str, _Runs] = {}

    def note(self, market: str, last_trade_id: int, now: int) -> None:
        """Every trade of ``market`` up to ``last_trade_id`` not yet noted happened at ``now``."""
        runs = self._markets.get(market)
        if runs is None:
            runs = self._markets[market] = _Runs()
        if last_trade_id <= runs.last:
            return
        times = runs.times
        if not times or times[-1] != now:
            runs.starts.append(runs.last + 1)
            times.append(now)
        runs.last = last_trade_id

    def time_of(self, market: str, trade_id: int) -> int:
        """The time of a trade; 0 when unknown (older than this record, or not noted)."""
        runs = self._markets.get(market)
        if runs is None or not 0 < trade_id <= runs.last:
            return 0
        return runs.times[bisect_right(runs.starts, trade_id) - 1]

    def to_plain(self) -> list[list[Any]]:
        """Deterministic plain data: ``[market, last, starts, times]`` by market name, the
        arrays as little-endian int64 bytes."""
        return [
            [name, runs.last, _le_bytes(runs.starts), _le_bytes(runs.times)]
            for name, runs in sorted(self._markets.items())
        ]

    @classmethod
    def from_plain(cls, rows: list[list[Any]]) -> TradeTimes:
        found = cls()
        for name, last, starts, times in rows:
            runs = found._markets[name] = _Runs()
            runs.starts, runs.times, runs.last = _from_le(starts), _from_le(times), last
            if len(runs.starts) != len(runs.times):
                raise ValueError(f"trade times of {name}: starts and times differ in length")
        return found


def _le_bytes(values: array[int]) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array("q", values)
    swapped.byteswap()
    return swapped.tobytes()


def _from_le(data: bytes) -> array[int]:
    values = array("q")
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values

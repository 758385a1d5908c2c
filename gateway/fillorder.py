"""The order of fills across markets, for a ``fills`` query that names no market.

ENGINE.md lists a user's fills "oldest first (in the order they happened,
across markets)". One engine knows that order (a fill's seq); here each
market is its own replica group with its own seqs, so nothing the groups
return orders two markets' fills. This gateway therefore remembers when it
first saw each trade: in a command's reply (which reaches the gateway
before the client can send its next request, so fills a client caused one
after another are ordered as they happened) or on the market's committed
event stream (every trade since the gateway started following the market).
Trades from before that are ordered by market, then trade id, ahead of the
rest. Another gateway's clients' fills are ordered as this gateway's feeds
saw them, which follows real time up to the feeds' lag. docs/protocol.md
says so.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from typing import Any


class FillOrder:
    """When this gateway first saw each trade, as a counter shared by every market.

    Per market, an array of stamps indexed by trade id from the first trade
    seen (trade ids are dense per market), 0 for a trade not seen yet: 8
    bytes per trade.
    """

    def __init__(self) -> None:
        self._clock = 0
        self._first: dict[str, int] = {}  # market -> the first trade id seen
        self._stamps: dict[str, array[int]] = {}

    def saw(self, market: str, events: Iterable[Mapping[str, Any]]) -> None:
        """Note the fills among ``events`` (of ``market``) not seen before."""
        for event in events:
            if event.get("type") == "fill":
                trade_id = event.get("trade_id")
                if type(trade_id) is int and trade_id > 0:
                    self._stamp(market, trade_id)

    def _stamp(self, market: str, trade_id: int) -> None:
        first = self._first.setdefault(market, trade_id)
        if trade_id < first:
            return  # older than the first one seen: ordered with the old ones
        stamps = self._stamps.setdefault(market, array("q"))
        index = trade_id - first
        if index >= len(stamps):
            stamps.extend([0] * (index + 1 - len(stamps)))
        if stamps[index] == 0:
            self._clock += 1
            stamps[index] = self._clock

    def key(self, market: str, trade_id: int) -> tuple[int, int, str, int]:
        """A sort key: trades from before the gateway followed the market first (by market,
        then trade id), then the others in the order first seen; one not seen yet although
        newer than the first seen (the stream lags) comes last."""
        first = self._first.get(market)
        if first is None or trade_id < first:
            return (0, 0, market, trade_id)
        stamps = self._stamps[market]
        index = trade_id - first
        stamp = stamps[index] if index < len(stamps) else 0
        return (1, stamp or self._clock + 1, market, trade_id)

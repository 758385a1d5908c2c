"""Which market's backend serves a request, and how fanned-out replies are merged.

A request naming a market goes to that market's replica group. ``cancel_all``,
``orders`` and ``fills`` without a market go to every market (in market-name
order) and their results are merged:

* ``cancel_all``: the events of every market, markets in name order (the
  engine's own order for one book), ``seq`` the highest of the markets' seqs
  and ``seqs`` each market's seq (the seqs of different markets are unrelated
  counters).
* ``orders``: by market name, then order id (as the engine orders them).
* ``fills``: oldest first across markets as far as this gateway saw them
  happen (:mod:`gateway.fillorder`; markets share no clock or seq); within a
  market the order is exact. ``limit`` applies to the merged list and
  ``next`` is null (ENGINE.md: always null when no market is named); page one
  market at a time to read everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from gateway.backend import MarketBackend
from gateway.errors import GatewayError
from gateway.fillorder import FillOrder
from gateway.wire import quoted
from shard.node.api import CommandResult, Event


@attrs.frozen
class Market:
    name: str
    tick_size: str
    lot_size: str
    backend: MarketBackend = attrs.field(eq=False, repr=False)


class Router:
    """The markets one gateway serves, by name."""

    def __init__(self, markets: Sequence[Market]) -> None:
        self._markets = {m.name: m for m in sorted(markets, key=lambda m: m.name)}

    @property
    def markets(self) -> list[Market]:
        return list(self._markets.values())

    def resolve(self, name: str) -> Market:
        market = self._markets.get(name)
        if market is None:
            raise GatewayError("unknown_market", f"There is no market {quoted(name)}.")
        return market

    def targets(self, name: str | None) -> list[Market]:
        """The named market, or every market in name order when ``name`` is None."""
        return [self.resolve(name)] if name is not None else self.markets


def _seqs(parts: Sequence[tuple[str, CommandResult]]) -> dict[str, Any]:
    return {
        "seq": max(r.seq for _, r in parts),
        "seqs": {market: r.seq for market, r in parts},
    }


def merge_command(parts: Sequence[tuple[str, CommandResult]]) -> dict[str, Any]:
    """A fanned-out ``cancel_all``'s result; ``parts`` are in market-name order."""
    events: list[Event] = [e for _, r in parts for e in r.events]
    return {**_seqs(parts), "events": events}


def merge_orders(parts: Sequence[tuple[str, CommandResult]], user: str) -> dict[str, Any]:
    orders = [o for _, r in parts for o in r.events[0].get("orders", [])]
    return {"type": "orders", **_seqs(parts), "user": user, "orders": orders}


def merge_fills(
    parts: Sequence[tuple[str, CommandResult]],
    user: str,
    limit: int | None,
    order: FillOrder | None = None,
) -> dict[str, Any]:
    """Each market's oldest fills merged oldest first, as far as ``order`` knows
    (:mod:`gateway.fillorder`); without it by market, then trade id."""
    fills = [f for _, r in parts for f in r.events[0].get("fills", [])]
    if order is None:
        fills.sort(key=lambda f: (f.get("market", ""), f.get("trade_id", 0)))
    else:
        fills.sort(key=lambda f: order.key(str(f.get("market", "")), int(f.get("trade_id", 0))))
    if limit is not None:
        fills = fills[:limit]
    return {"type": "fills", **_seqs(parts), "user": user, "fills": fills, "next": None}

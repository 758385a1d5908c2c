"""Which market's backend serves a request, and how fanned-out replies are merged.

A request naming a market goes to that market's replica group. ``cancel_all``,
``orders`` and ``fills`` without a market go to every market (in market-name
order) and their results are merged:

* ``cancel_all``: the events of every market, markets in name order (the
  engine's own order for one book), ``seq`` the highest of the markets' seqs
  and ``seqs`` each market's seq (the seqs of different markets are unrelated
  counters).
* ``orders``: by market name, then order id (as the engine orders them).
* ``fills``: oldest first across markets, by the time each trade's leader
  sequenced it (the replicas report it beside each fill:
  :mod:`shard.tradetimes`), then market name and trade id; within a market
  the order is exact. ``limit`` applies to the merged list and ``next`` is
  null (ENGINE.md: always null when no market is named); page one market at
  a time to read everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from gateway.backend import MarketBackend
from gateway.errors import GatewayError
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
    parts: Sequence[tuple[str, CommandResult]], user: str, limit: int | None
) -> dict[str, Any]:
    """Each market's oldest fills merged oldest first: by the time of each trade (0 when
    the replica does not know it), then market and trade id."""
    timed: list[tuple[int, str, int, Event]] = []
    for _, result in parts:
        event = result.events[0]
        fills = event.get("fills", [])
        times = event.get("times") or [0] * len(fills)
        if len(times) != len(fills):
            raise ValueError(f"a fills result with {len(fills)} fills and {len(times)} times")
        timed += [(t, f["market"], f["trade_id"], f) for t, f in zip(times, fills, strict=True)]
    timed.sort(key=lambda row: row[:3])
    merged = [row[3] for row in (timed if limit is None else timed[:limit])]
    return {"type": "fills", **_seqs(parts), "user": user, "fills": merged, "next": None}


def fills_reply(event: Event) -> dict[str, Any]:
    """One market's ``fills`` result for the client: without the replicas' ``times``."""
    reply = dict(event)
    reply.pop("times", None)
    return reply

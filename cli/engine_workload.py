"""Seeded, realistic command streams for benchmarking the engine.

The generator drives a shadow :class:`~clob.engine.Engine` while it writes
commands, so cancels and amends name orders that are really live (as a real
client would) and the book keeps a realistic shape. The timed run then replays
the same pre-built command dicts into a fresh engine.

Mix (of all commands): about 46% new orders (10% of them marketable:
crossing limits, IOC, FOK and market orders), 40% cancels, 11% amends (mostly
quantity cuts, some re-prices), and 3% other commands and queries (cancel_all,
book, orders, fills). While a market holds fewer than ``floor`` live orders a
cancel or amend becomes a passive new order, which keeps the book's size
stationary.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from clob.engine import Engine

Command = dict[str, Any]

TICK = "0.01"
LOT = "0.001"
MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD")
START_MID = {"BTC-USD": 6_000_000, "ETH-USD": 300_000, "SOL-USD": 15_000}  # ticks


def _price(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}"


def _qty(lots: int) -> str:
    return f"{lots // 1000}.{lots % 1000:03d}"


class WorkloadGenerator:
    """Produces command dicts; see the module docstring for the mix."""

    def __init__(self, seed: int, users: int = 2000, floor: int = 2500) -> None:
        self.rng = random.Random(seed)
        self.users = [f"user{i:05d}" for i in range(users)]
        self.shadow = Engine()
        self.mid = dict(START_MID)
        self.live: dict[str, list[tuple[str, int, str]]] = {m: [] for m in MARKETS}
        self.counter = 0
        self.seq = 0
        # below this many live orders in a market, a cancel becomes a new order
        self.floor = floor

    def setup(self, resting: int) -> list[Command]:
        """The create_market commands, then ``resting`` passive orders per market."""
        commands: list[Command] = [
            {"type": "create_market", "market": m, "tick_size": TICK, "lot_size": LOT}
            for m in MARKETS
        ]
        for market in MARKETS:
            commands += [self._new_order(market, marketable=False) for _ in range(resting)]
        return commands

    def _apply(self, command: Command) -> Command:
        self.seq += 1
        self.shadow.execute(command, self.seq)
        return command

    def build(
        self, count: int, progress: Callable[[int], None] | None = None
    ) -> tuple[list[Command], list[Command]]:
        """``(setup, mixed)``: markets and a resting book, then ``count`` mixed commands."""
        setup = [self._apply(c) for c in self.setup(2 * self.floor)]
        mixed = []
        for i, command in enumerate(self._stream(count)):
            mixed.append(self._apply(command))
            if progress is not None and i % 50_000 == 0:
                progress(i)
        return setup, mixed

    def _stream(self, count: int) -> Iterator[Command]:
        rng = self.rng
        for _ in range(count):
            market = MARKETS[min(int(rng.expovariate(1.2)), len(MARKETS) - 1)]
            if rng.random() < 0.02:  # the mid drifts slowly (a random walk)
                self.mid[market] = max(100, self.mid[market] + rng.choice((-1, 1)))
            roll = rng.random()
            if roll < 0.46:
                yield self._new_order(market, marketable=rng.random() < 0.1)
            elif roll < 0.86:
                yield self._cancel(market) or self._new_order(market, False)
            elif roll < 0.97:
                yield self._amend(market) or self._new_order(market, False)
            else:
                yield self._other(market)

    def _new_order(self, market: str, marketable: bool) -> Command:
        rng = self.rng
        user = rng.choice(self.users)
        is_buy = rng.random() < 0.5
        mid = self.mid[market]
        self.counter += 1
        coid = f"c{self.counter}"
        sizes = (1, 2, 5, 10, 20, 50) if marketable else (1, 2, 5, 10, 20, 50, 100, 250, 1000)
        qty = _qty(rng.choice(sizes))
        command: Command = {
            "type": "new_order",
            "market": market,
            "user": user,
            "client_order_id": coid,
            "side": "buy" if is_buy else "sell",
            "order_type": "limit",
            "qty": qty,
        }
        if marketable:
            kind = rng.random()
            if kind < 0.15:
                command["order_type"] = "market"
                return command
            offset = 1 + int(rng.expovariate(0.3))
            command["price"] = _price(mid + offset if is_buy else max(1, mid - offset))
            command["tif"] = "ioc" if kind < 0.55 else ("fok" if kind < 0.7 else "gtc")
        else:
            # passive: clustered a few ticks behind the mid, long thin tail
            offset = 1 + int(rng.expovariate(0.08))
            command["price"] = _price(max(1, mid - offset) if is_buy else mid + offset)
            if rng.random() < 0.1:
                command["post_only"] = True
        if rng.random() < 0.05:
            command["stp"] = rng.choice(("cancel_maker", "cancel_both"))
        self.live[market].append((user, self.counter, coid))
        return command

    def _pick_live(self, market: str) -> tuple[str, int] | None:
        """A random live order of the shadow engine: (user, order_id)."""
        candidates = self.live[market]
        book = self.shadow.markets[market]
        if book.live < self.floor:
            return None
        while candidates:  # each dead entry is dropped once: amortized O(1)
            index = self.rng.randrange(len(candidates))
            user, _, coid = candidates[index]
            order = book.user_live.get(user, {}).get(coid)
            if order is None:  # gone: drop it (swap with last for O(1))
                candidates[index] = candidates[-1]
                candidates.pop()
                continue
            return user, order.order_id
        return None

    def _cancel(self, market: str) -> Command | None:
        picked = self._pick_live(market)
        if picked is None:
            return None
        user, order_id = picked
        return {"type": "cancel", "market": market, "user": user, "order_id": order_id}

    def _amend(self, market: str) -> Command | None:
        picked = self._pick_live(market)
        if picked is None:
            return None
        user, order_id = picked
        order = self.shadow.markets[market].user_live[user][order_id]
        command: Command = {"type": "amend", "market": market, "user": user, "order_id": order_id}
        if self.rng.random() < 0.7 and order.qty > 1:
            command["qty"] = _qty(max(1, order.qty // 2))
        else:
            step = self.rng.choice((-2, -1, 1, 2))
            command["price"] = _price(max(1, order.price + step))
        return command

    def _other(self, market: str) -> Command:
        rng = self.rng
        user = rng.choice(self.users)
        roll = rng.random()
        if roll < 0.3:
            return {"type": "book", "market": market, "depth": 10}
        if roll < 0.6:
            return {"type": "orders", "user": user, "market": market}
        if roll < 0.9:
            return {"type": "fills", "user": user, "market": market, "limit": 20}
        return {"type": "cancel_all", "user": user, "market": market}


def resting_orders(count: int, levels: int, market: str = "BTC-USD") -> Iterator[Command]:
    """``count`` non-crossing limit orders spread over ``levels`` price levels.

    Bids below and asks above a fixed mid, each with a client order id, from
    1,000 users: what a deep, quiet book looks like.
    """
    mid = START_MID[market]
    half = max(1, levels // 2)
    for i in range(count):
        is_buy = i % 2 == 0
        distance = 1 + (i // 2) % half
        yield {
            "type": "new_order",
            "market": market,
            "user": f"user{i % 1000:05d}",
            "client_order_id": f"r{i}",
            "side": "buy" if is_buy else "sell",
            "order_type": "limit",
            "price": _price(mid - distance if is_buy else mid + distance),
            "qty": _qty(1 + i % 7),
        }

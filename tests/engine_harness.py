"""Small helpers for the engine tests: a session that numbers commands and
returns encoded events, and numeric comparison of decimal strings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clob.engine import Engine

Row = dict[str, Any]


def num(text: str) -> Decimal:
    """A decimal string as a Decimal, so "1.500" equals "1.5"."""
    assert isinstance(text, str), text
    return Decimal(text)


def new_order_command(
    market: str, user: str, side: str, price: str | None, qty: str, **extra: Any
) -> Row:
    """A ``new_order`` command dict: a market order when ``price`` is None."""
    command: Row = {
        "type": "new_order",
        "market": market,
        "user": user,
        "side": side,
        "order_type": "limit" if price is not None else "market",
        "qty": qty,
    }
    if price is not None:
        command["price"] = price
    command.update(extra)
    return command


class Session:
    """An engine plus a running seq; ``run`` returns JSON-ready events."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.seq = 0

    def send(self, command: object) -> list[Row]:
        self.seq += 1
        return [self.engine.encode(e) for e in self.engine.execute(command, self.seq)]

    def run(self, **command: Any) -> list[Row]:
        return self.send(command)

    def market(self, name: str = "BTC-USD", tick: str = "0.01", lot: str = "0.001") -> None:
        rows = self.run(type="create_market", market=name, tick_size=tick, lot_size=lot)
        assert rows[0]["type"] == "market_created", rows

    def order(
        self,
        user: str,
        side: str,
        price: str | None,
        qty: str,
        market: str = "BTC-USD",
        **extra: Any,
    ) -> list[Row]:
        return self.send(new_order_command(market, user, side, price, qty, **extra))

    def book(self, market: str = "BTC-USD", depth: int = 10) -> tuple[list[Any], list[Any]]:
        (row,) = self.run(type="book", market=market, depth=depth)
        bids = [(num(p), num(q)) for p, q in row["bids"]]
        asks = [(num(p), num(q)) for p, q in row["asks"]]
        return bids, asks

    def orders(self, user: str, **extra: Any) -> list[Row]:
        (row,) = self.run(type="orders", user=user, **extra)
        assert row["type"] == "orders", row
        orders: list[Row] = row["orders"]
        return orders


def types(rows: list[Row]) -> list[str]:
    return [row["type"] for row in rows]


def reason(rows: list[Row]) -> str:
    """The rejection reason of a single ``rejected`` event."""
    assert len(rows) == 1 and rows[0]["type"] == "rejected", rows
    value: str = rows[0]["reason"]
    return value

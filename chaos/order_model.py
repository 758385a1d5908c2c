"""The live orders implied by a sequence of committed engine events.

Folding ``accepted``, ``fill``, ``cancelled`` and ``amended`` events in
``seq`` order gives every user's live orders after any command, without
running the engine: the checker compares ``orders`` query results with it.
An order is live from its ``accepted`` event until it is cancelled or its
remaining quantity reaches zero (an ``ioc``/``fok``/market order that does
not fill is always followed by a ``cancelled`` event in the same command).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import attrs

Event = dict[str, Any]


@attrs.define
class LiveOrder:
    market: str
    order_id: int
    user: str
    client_order_id: str | None
    side: str
    price: Decimal | None
    qty: Decimal  # remaining
    filled_qty: Decimal
    tif: str
    post_only: bool


# What an ``orders`` row is compared on: decimals by value, not by spelling.
OrderKey = tuple[int, str | None, str, Decimal | None, Decimal, Decimal, str, bool]


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def order_key(row: dict[str, Any]) -> OrderKey:
    """Normalize one row of an ``orders`` query result."""
    return (
        int(row["order_id"]),
        row.get("client_order_id"),
        str(row["side"]),
        _decimal(row.get("price")),
        Decimal(str(row["qty"])),
        Decimal(str(row.get("filled_qty", "0"))),
        str(row.get("tif")),
        bool(row.get("post_only", False)),
    )


class OrderModel:
    """Live orders per market, updated one committed command's events at a time."""

    def __init__(self) -> None:
        self._orders: dict[tuple[str, int], LiveOrder] = {}

    def apply(self, events: Iterable[Event]) -> None:
        touched: list[tuple[str, int]] = []
        for event in events:
            kind = event.get("type")
            market = str(event.get("market"))
            if kind == "accepted":
                key = (market, int(event["order_id"]))
                self._orders[key] = LiveOrder(
                    market=market,
                    order_id=key[1],
                    user=str(event["user"]),
                    client_order_id=event.get("client_order_id"),
                    side=str(event["side"]),
                    price=_decimal(event.get("price")),
                    qty=Decimal(str(event["qty"])),
                    filled_qty=Decimal(0),
                    tif=str(event.get("tif")),
                    post_only=bool(event.get("post_only", False)),
                )
                touched.append(key)
            elif kind == "fill":
                qty = Decimal(str(event["qty"]))
                for field in ("taker_order_id", "maker_order_id"):
                    key = (market, int(event[field]))
                    order = self._orders.get(key)
                    if order is not None:
                        order.qty -= qty
                        order.filled_qty += qty
                        touched.append(key)
            elif kind == "cancelled":
                self._orders.pop((market, int(event["order_id"])), None)
            elif kind == "amended":
                order = self._orders.get((market, int(event["order_id"])))
                if order is not None:
                    order.price = _decimal(event.get("price"))
                    order.qty = Decimal(str(event["qty"]))
        for key in touched:
            order = self._orders.get(key)
            if order is not None and order.qty <= 0:
                del self._orders[key]

    def live(self, market: str, user: str) -> list[OrderKey]:
        """The user's live orders in ``market`` by order id, as :func:`order_key` tuples."""
        rows = [o for o in self._orders.values() if o.market == market and o.user == user]
        rows.sort(key=lambda o: o.order_id)
        return [
            (
                o.order_id,
                o.client_order_id,
                o.side,
                o.price,
                o.qty,
                o.filled_qty,
                o.tif,
                o.post_only,
            )
            for o in rows
        ]

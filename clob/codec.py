"""Events to JSON-ready dicts, exactly as ENGINE.md shows them.

Integer ticks and lots become decimal strings of the event's market; ids stay
integers; absent optional values become ``null`` where the spec shows the field
(``client_order_id``, ``price`` of a market order, ``next``) and are left out of
``rejected`` events. Key order follows the spec so encoded bytes are stable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clob.events import (
    Accepted,
    Amended,
    BookResult,
    Cancelled,
    Event,
    Fill,
    FillsResult,
    MarketCreated,
    OrdersResult,
    Rejected,
)
from clob.market import BUY, SELL, Market

JsonDict = dict[str, Any]
_OPPOSITE = {BUY: SELL, SELL: BUY}


def encode(event: Event, markets: Mapping[str, Market]) -> JsonDict:
    """The JSON-ready dict of ``event`` (markets supply tick and lot sizes)."""
    if type(event) is Fill:
        return _fill(event, markets[event.market])
    if type(event) is Accepted:
        return _accepted(event, markets[event.market])
    if type(event) is Cancelled:
        return {
            "type": "cancelled",
            "seq": event.seq,
            "market": event.market,
            "order_id": event.order_id,
            "user": event.user,
            "remaining_qty": markets[event.market].lot.text_of(event.remaining_qty),
            "reason": event.reason,
        }
    if type(event) is Amended:
        market = markets[event.market]
        return {
            "type": "amended",
            "seq": event.seq,
            "market": event.market,
            "order_id": event.order_id,
            "user": event.user,
            "price": market.tick.text_of(event.price),
            "qty": market.lot.text_of(event.qty),
        }
    if type(event) is Rejected:
        return _rejected(event)
    if type(event) is MarketCreated:
        return {
            "type": "market_created",
            "seq": event.seq,
            "market": event.market,
            "tick_size": event.tick_size,
            "lot_size": event.lot_size,
        }
    if type(event) is OrdersResult:
        return _orders(event, markets)
    if type(event) is FillsResult:
        return _fills(event, markets)
    if type(event) is BookResult:
        return _book(event, markets[event.market])
    raise TypeError(f"not an engine event: {event!r}")


def encode_events(events: list[Event], markets: Mapping[str, Market]) -> list[JsonDict]:
    """``[encode(e, markets) for e in events]``: one call per command for the replica,
    instead of one interpreted call per event."""
    return [encode(event, markets) for event in events]


def _accepted(event: Accepted, market: Market) -> JsonDict:
    return {
        "type": "accepted",
        "seq": event.seq,
        "market": event.market,
        "order_id": event.order_id,
        "user": event.user,
        "client_order_id": event.client_order_id,
        "side": event.side,
        "order_type": event.order_type,
        "price": None if event.price is None else market.tick.text_of(event.price),
        "qty": market.lot.text_of(event.qty),
        "tif": event.tif,
        "post_only": event.post_only,
    }


def _fill(event: Fill, market: Market) -> JsonDict:
    return {
        "type": "fill",
        "seq": event.seq,
        "market": event.market,
        "trade_id": event.trade_id,
        "price": market.tick.text_of(event.price),
        "qty": market.lot.text_of(event.qty),
        "taker_order_id": event.taker_order_id,
        "maker_order_id": event.maker_order_id,
        "taker_user": event.taker_user,
        "maker_user": event.maker_user,
        "taker_side": event.taker_side,
    }


def _rejected(event: Rejected) -> JsonDict:
    row: JsonDict = {
        "type": "rejected",
        "seq": event.seq,
        "reason": event.reason,
        "message": event.message,
    }
    if event.market is not None:
        row["market"] = event.market
    if event.user is not None:
        row["user"] = event.user
    if event.client_order_id is not None:
        row["client_order_id"] = event.client_order_id
    if event.order_id is not None:
        row["order_id"] = event.order_id
    return row


def _orders(event: OrdersResult, markets: Mapping[str, Market]) -> JsonDict:
    rows = []
    for row in event.orders:
        market = markets[row.market]
        rows.append(
            {
                "market": row.market,
                "order_id": row.order_id,
                "client_order_id": row.client_order_id,
                "side": row.side,
                "price": market.tick.text_of(row.price),
                "qty": market.lot.text_of(row.qty),
                "filled_qty": market.lot.text_of(row.filled_qty),
                "tif": "gtc",  # only gtc limit orders ever rest
                "post_only": row.post_only,
            }
        )
    return {"type": "orders", "seq": event.seq, "user": event.user, "orders": rows}


def _fills(event: FillsResult, markets: Mapping[str, Market]) -> JsonDict:
    user = event.user
    rows = []
    for fill in event.fills:
        market = markets[fill.market]
        taker = fill.taker_user == user
        side = fill.taker_side if taker else _OPPOSITE[fill.taker_side]
        rows.append(
            {
                "market": fill.market,
                "trade_id": fill.trade_id,
                "order_id": fill.taker_order_id if taker else fill.maker_order_id,
                "client_order_id": (
                    fill.taker_client_order_id if taker else fill.maker_client_order_id
                ),
                "side": side,
                "price": market.tick.text_of(fill.price),
                "qty": market.lot.text_of(fill.qty),
                "liquidity": "taker" if taker else "maker",
            }
        )
    return {"type": "fills", "seq": event.seq, "user": user, "fills": rows, "next": event.next}


def _book(event: BookResult, market: Market) -> JsonDict:
    tick, lot = market.tick, market.lot
    return {
        "type": "book",
        "seq": event.seq,
        "market": event.market,
        "bids": [[tick.text_of(p), lot.text_of(q)] for p, q in event.bids],
        "asks": [[tick.text_of(p), lot.text_of(q)] for p, q in event.asks],
    }

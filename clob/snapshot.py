"""Engine state to deterministic msgpack bytes and back.

Layout (version 1), lists only so equal states give equal bytes::

    [1, [market, ...]]            markets in name order
    market = [name, tick, lot, next_order_id, next_trade_id, bids, asks, trades]
    bids/asks = [[price, [order, ...]], ...]   levels by ascending price, orders oldest first
    order = [order_id, user, client_order_id, price, qty, filled, stp, post_only]
    trades = [fill, ...]          every trade of the market, by trade id
    fill = [seq, trade_id, price, qty, taker_order_id, maker_order_id,
            taker_user, maker_user, taker_side, taker_coid, maker_coid]

Everything else is derived on load: the id, user and client-order-id
indexes and the per-user fill histories.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from clob.book import BookSide, Order
from clob.decimals import Step, is_decimal
from clob.market import FillRow, Market

VERSION = 1


def dump(markets: dict[str, Market]) -> bytes:
    """Serialize every market (book, counters, fill history)."""
    rows = [_market_row(markets[name]) for name in sorted(markets)]
    data: bytes = msgpack.packb([VERSION, rows], use_bin_type=True)
    return data


def digest(data: bytes) -> bytes:
    """A 32-byte BLAKE2b hash of snapshot bytes."""
    return hashlib.blake2b(data, digest_size=32).digest()


def _market_row(market: Market) -> list[Any]:
    trades: dict[int, FillRow] = {}
    for history in market.user_fills.values():
        for row in history:
            trades[row[1]] = row
    return [
        market.name,
        market.tick.text,
        market.lot.text,
        market.next_order_id,
        market.next_trade_id,
        _side_rows(market.bids),
        _side_rows(market.asks),
        [list(trades[trade_id]) for trade_id in sorted(trades)],
    ]


def _side_rows(side: BookSide) -> list[Any]:
    rows = []
    for price in side.prices:
        level = side.levels[price]
        orders = [
            [o.order_id, o.user, o.client_order_id, o.price, o.qty, o.filled, o.stp, o.post_only]
            for o in level.orders()
        ]
        rows.append([price, orders])
    return rows


def load(data: bytes, markets: dict[str, Market]) -> None:
    """Fill the empty ``markets`` from snapshot bytes."""
    version, rows = msgpack.unpackb(data, use_list=True, strict_map_key=True)
    if version != VERSION:
        raise ValueError(f"unsupported engine snapshot version {version!r}")
    users: dict[str, str] = {}
    for name, tick_text, lot_text, next_order_id, next_trade_id, bids, asks, trades in rows:
        assert is_decimal(tick_text) and is_decimal(lot_text)
        tick, lot = Step.parse(tick_text), Step.parse(lot_text)
        assert tick is not None and lot is not None
        market = Market(name, tick, lot)
        market.next_order_id = next_order_id
        market.next_trade_id = next_trade_id
        live: list[Order] = []
        for is_buy, side_rows in ((True, bids), (False, asks)):
            side = market.bids if is_buy else market.asks
            for _price, orders in side_rows:
                for order_id, user, coid, price, qty, filled, stp, post_only in orders:
                    user = users.setdefault(user, user)
                    order = Order(order_id, user, coid, is_buy, price, qty, filled, stp, post_only)
                    side.add(order)
                    live.append(order)
            side.take_touched()
        for order in sorted(live, key=lambda o: o.order_id):
            market.index_order(order)
        for seq, trade_id, price, qty, t_id, m_id, t_user, m_user, t_side, t_coid, m_coid in trades:
            t_user = users.setdefault(t_user, t_user)
            m_user = users.setdefault(m_user, m_user)
            row: FillRow = (
                seq, trade_id, price, qty, t_id, m_id, t_user, m_user, t_side, t_coid, m_coid
            )  # fmt: skip
            for who in (t_user, m_user):
                market.user_fills.setdefault(who, []).append(row)
        markets[name] = market

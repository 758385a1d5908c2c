"""Fills without a market come oldest first across markets (ENGINE.md), as the gateway saw them."""

from __future__ import annotations

from pathlib import Path

from gateway.client import open_client
from gateway.fillorder import FillOrder
from tests.gateway_harness import running_gateway


def _fill(trade_id: int) -> dict[str, object]:
    return {"type": "fill", "trade_id": trade_id}


def test_trades_sort_by_when_first_seen_after_the_older_ones() -> None:
    order = FillOrder()
    order.saw("ETH", [_fill(5), {"type": "accepted"}])
    order.saw("BTC", [_fill(9)])
    order.saw("ETH", [_fill(6), _fill(5)])  # seen again: keeps its first stamp
    order.saw("BTC", [_fill(8)])  # older than BTC's first seen trade: an old one
    trades = [("ETH", 6), ("BTC", 9), ("ETH", 5), ("BTC", 8), ("ETH", 2), ("BTC", 12)]
    trades.sort(key=lambda t: order.key(*t))
    # old ones first (market, trade id), then as seen, then the newer unseen one
    assert trades == [("BTC", 8), ("ETH", 2), ("ETH", 5), ("BTC", 9), ("ETH", 6), ("BTC", 12)]


async def test_fills_without_market_are_in_the_order_they_happened(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"]) as alice,
        open_client(gw.url, api_key=gw.keys["bob"]) as bob,
    ):
        # ETH, then BTC, then ETH again: market-name order would put BTC first
        for market, price in (("ETH-USD", "10.00"), ("BTC-USD", "100.00"), ("ETH-USD", "11.00")):
            await alice.new_order(market, "sell", "1.00", price)
            await bob.new_order(market, "buy", "1.00", price)
        for client in (alice, bob):
            fills = (await client.fills())["fills"]
            assert [(f["market"], f["price"]) for f in fills] == [
                ("ETH-USD", "10.00"),
                ("BTC-USD", "100.00"),
                ("ETH-USD", "11.00"),
            ]
            limited = (await client.fills(limit=2))["fills"]
            assert [f["market"] for f in limited] == ["ETH-USD", "BTC-USD"]

"""Order lifecycle through a real gateway over WebSocket (LocalBackend markets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.client import ClientError, open_client
from tests.gateway_harness import call, raw, recv, running_gateway, send


async def test_two_user_lifecycle(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"]) as alice,
        open_client(gw.url, api_key=gw.keys["bob"]) as bob,
    ):
        placed = await alice.new_order("BTC-USD", "sell", "1.000", "100.00", client_order_id="a1")
        accepted = placed["events"][0]
        assert accepted["type"] == "accepted" and accepted["user"] == "alice"
        assert placed["seq"] == accepted["seq"]
        order_id = accepted["order_id"]

        taken = await bob.new_order("BTC-USD", "buy", "0.400", "101.00")
        fill = next(e for e in taken["events"] if e["type"] == "fill")
        assert fill["maker_order_id"] == order_id and fill["taker_user"] == "bob"
        assert "maker_user" not in fill  # alice's name is not bob's business

        [mine] = await alice.orders("BTC-USD")
        assert mine["order_id"] == order_id and mine["client_order_id"] == "a1"
        assert float(mine["qty"]) == 0.6 and float(mine["filled_qty"]) == 0.4
        assert await bob.orders() == []

        amended = await alice.amend("BTC-USD", client_order_id="a1", qty="0.500")
        assert amended["events"][0]["type"] == "amended"
        alice_fills = (await alice.fills("BTC-USD"))["fills"]
        bob_fills = (await bob.fills())["fills"]
        assert [f["liquidity"] for f in alice_fills] == ["maker"]
        assert [f["liquidity"] for f in bob_fills] == ["taker"]
        assert alice_fills[0]["trade_id"] == bob_fills[0]["trade_id"] == fill["trade_id"]

        cancelled = await alice.cancel("BTC-USD", order_id)
        assert [e["type"] for e in cancelled["events"]] == ["cancelled"]
        assert cancelled["events"][0]["reason"] == "user"
        assert await alice.orders() == []

        book = await bob.book("BTC-USD")
        assert book["bids"] == [] and book["asks"] == [] and book["seq"] >= cancelled["seq"]


async def test_engine_rejection_is_ok_with_rejected_event(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, open_client(gw.url, api_key=gw.keys["alice"]) as c:
        result = await c.new_order("BTC-USD", "buy", "1", "100.001")  # off tick
        [event] = result["events"]
        assert event["type"] == "rejected" and event["reason"] == "invalid_price"
        assert result["seq"] == event["seq"]


async def test_cancel_all_fans_out_over_markets(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, open_client(gw.url, api_key=gw.keys["alice"]) as c:
        await c.new_order("ETH-USD", "buy", "1", "10.00")
        await c.new_order("BTC-USD", "buy", "1", "10.00")
        await c.new_order("BTC-USD", "buy", "1", "11.00")
        orders = await c.orders()
        assert [(o["market"], o["order_id"]) for o in orders] == [
            ("BTC-USD", 1),
            ("BTC-USD", 2),
            ("ETH-USD", 1),
        ]
        result = await c.cancel_all()
        assert [(e["market"], e["order_id"]) for e in result["events"]] == [
            ("BTC-USD", 1),
            ("BTC-USD", 2),
            ("ETH-USD", 1),
        ]
        assert {e["reason"] for e in result["events"]} == {"cancel_all"}
        assert result["seqs"] == {
            "BTC-USD": gw.backends["BTC-USD"].seq,
            "ETH-USD": gw.backends["ETH-USD"].seq,
        }
        assert await c.orders() == []


async def test_fills_without_market_merge_in_order_and_page_per_market(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"]) as alice,
        open_client(gw.url, api_key=gw.keys["bob"]) as bob,
    ):
        for market in ("ETH-USD", "BTC-USD", "ETH-USD"):
            await alice.new_order(market, "sell", "1", "5.00")
            await bob.new_order(market, "buy", "1", "5.00")
        fills = (await bob.fills())["fills"]
        assert [(f["market"], f["trade_id"]) for f in fills] == [
            ("ETH-USD", 1),
            ("BTC-USD", 1),
            ("ETH-USD", 2),
        ]  # as they happened (tests/test_trade_times.py)
        page = await bob.fills("ETH-USD", limit=1)
        assert len(page["fills"]) == 1 and page["next"] is not None
        rest = await bob.fills("ETH-USD", after=page["next"])
        assert [f["trade_id"] for f in rest["fills"]] == [2]
        limited = await bob.fills(limit=2)
        assert len(limited["fills"]) == 2 and limited["next"] is None


async def test_users_cannot_touch_each_others_orders(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"]) as alice,
        open_client(gw.url, api_key=gw.keys["bob"]) as bob,
    ):
        placed = await alice.new_order("BTC-USD", "buy", "1", "50.00", client_order_id="x")
        order_id = placed["events"][0]["order_id"]
        for attempt in (
            bob.cancel("BTC-USD", order_id),
            bob.cancel("BTC-USD", client_order_id="x"),
            bob.amend("BTC-USD", order_id, price="51.00"),
        ):
            [event] = (await attempt)["events"]
            assert event["type"] == "rejected" and event["reason"] == "unknown_order"
        await bob.cancel_all()
        assert await bob.orders() == []
        [still] = await alice.orders()
        assert still["order_id"] == order_id and still["price"].startswith("50")
        with pytest.raises(ClientError) as info:
            await bob.request("cancel", market="BTC-USD", order_id=order_id, user="alice")
        assert info.value.code == "forbidden"
        # naming oneself is tolerated
        ok = await alice.request("orders", market="BTC-USD", user="alice")
        assert len(ok["orders"]) == 1


async def test_same_market_requests_apply_in_order_sent(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 0, "api_key": gw.keys["alice"]})

        count = 60
        for i in range(count):
            market = "BTC-USD" if i % 2 else "ETH-USD"
            await send(
                ws,
                {
                    "op": "new_order",
                    "id": i + 1,
                    "market": market,
                    "side": "buy",
                    "order_type": "limit",
                    "price": "1.00",
                    "qty": "1",
                    "client_order_id": f"c{i}",
                },
            )
        replies = [await recv(ws) for _ in range(count)]
        assert sorted(r["id"] for r in replies) == list(range(1, count + 1))
        by_market: dict[str, list[tuple[int, int]]] = {}
        for r in replies:
            event = r["result"]["events"][0]
            by_market.setdefault(event["market"], []).append((r["id"], event["order_id"]))
        for pairs in by_market.values():
            pairs.sort()
            assert [oid for _, oid in pairs] == list(range(1, len(pairs) + 1))

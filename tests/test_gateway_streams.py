"""Book, trades and user streams through a real gateway, checked against queries."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from gateway.client import open_client
from gateway.client_streams import LocalBook
from gateway.settings import GatewaySettings
from tests.gateway_harness import call, raw, recv, running_gateway, send, settle, until_barrier


async def collect_until(ws: WebSocketConnection, channel: str, seq: int) -> list[dict[str, Any]]:
    """Stream messages of ``channel`` until one with seq >= ``seq`` (replies are skipped)."""
    got: list[dict[str, Any]] = []
    while True:
        message = await recv(ws)
        if message.get("channel") == channel:
            got.append(message)
            if message["seq"] >= seq:
                return got


async def trade_a_bit(url: str, keys: dict[str, str]) -> int:
    """Some resting orders, fills, an amend and a cancel; returns the last BTC-USD seq."""
    async with (
        open_client(url, api_key=keys["alice"]) as alice,
        open_client(url, api_key=keys["bob"]) as bob,
    ):
        for price in ("100.00", "101.00", "102.00"):
            await alice.new_order("BTC-USD", "sell", "1", price)
        await bob.new_order("BTC-USD", "buy", "0.5", "99.00")
        await bob.new_order("BTC-USD", "buy", "1.5", "101.00")  # takes 100 and half of 101
        placed = await alice.new_order("BTC-USD", "buy", "2", "98.00")
        await alice.amend("BTC-USD", placed["events"][0]["order_id"], price="98.50")
        last = await bob.cancel_all("BTC-USD")
        return int(last["seq"])


async def test_book_stream_chains_and_matches_the_book_query(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        reply = await call(
            ws, {"op": "subscribe", "id": 1, "channels": [{"name": "book", "market": "BTC-USD"}]}
        )
        assert reply["result"]["channels"] == [{"name": "book", "market": "BTC-USD"}]
        last = await trade_a_bit(gw.url, gw.keys)
        messages = await collect_until(ws, "book", last)
        assert messages[0]["type"] == "snapshot" and messages[0]["seq"] == 1
        assert messages[0]["bids"] == [] and messages[0]["asks"] == []
        for before, after in itertools.pairwise(messages):
            assert after["type"] == "update" and after["prev_seq"] == before["seq"]
            assert after["seq"] > before["seq"] and after["market"] == "BTC-USD"
        book = LocalBook("BTC-USD")
        for message in messages:
            assert book.apply(message)
        view = book.view()
        queried = await call(ws, {"op": "book", "id": 2, "market": "BTC-USD", "depth": 50})
        result = queried["result"]
        assert result["seq"] == view.seq == last
        assert [tuple(level) for level in result["bids"]] == list(view.bids)
        assert [tuple(level) for level in result["asks"]] == list(view.asks)
        assert view.bids and view.asks  # the scenario leaves both sides non-empty

        # a late subscriber gets the current book as its snapshot
        async with raw(gw.url) as late:
            await send(
                late,
                {"op": "subscribe", "id": 1, "channels": [{"name": "book", "market": "BTC-USD"}]},
            )
            snapshot = await collect_until(late, "book", 0)
            assert snapshot[0]["type"] == "snapshot" and snapshot[0]["seq"] == last
            assert snapshot[0]["asks"] == result["asks"] and snapshot[0]["bids"] == result["bids"]


async def test_trades_stream_matches_fills_and_hides_users(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(
            ws, {"op": "subscribe", "id": 1, "channels": [{"name": "trades", "market": "BTC-USD"}]}
        )
        await trade_a_bit(gw.url, gw.keys)
        async with open_client(gw.url, api_key=gw.keys["bob"]) as bob:
            fills = (await bob.fills("BTC-USD"))["fills"]
        assert len(fills) == 2
        trades = [await recv(ws) for _ in fills]
        for trade, fill in zip(trades, fills, strict=True):
            assert set(trade) == {
                "channel",
                "market",
                "type",
                "seq",
                "trade_id",
                "price",
                "qty",
                "taker_side",
            }
            assert trade["channel"] == "trades" and trade["type"] == "trade"
            assert (trade["trade_id"], trade["price"], trade["qty"]) == (
                fill["trade_id"],
                fill["price"],
                fill["qty"],
            )
            assert trade["taker_side"] == "buy"


async def test_user_stream_shows_only_own_events_redacted(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 0, "api_key": gw.keys["alice"]})
        await call(ws, {"op": "subscribe", "id": 1, "channels": [{"name": "user"}]})
        last = await trade_a_bit(gw.url, gw.keys)
        # an ETH order by bob must not appear; one by alice must
        async with open_client(gw.url, api_key=gw.keys["bob"]) as bob:
            await bob.new_order("ETH-USD", "buy", "1", "1.00")
        async with open_client(gw.url, api_key=gw.keys["alice"]) as alice:
            eth = await alice.new_order("ETH-USD", "buy", "1", "1.00")
            own_orders = await alice.orders()
            own_fills = (await alice.fills())["fills"]
        await settle(gw)
        events = await until_barrier(ws)
        for message in events:
            assert message["channel"] == "user" and message["type"] == "event"
            assert message["event"]["seq"] == message["seq"]
            assert message["market"] == message["event"]["market"]
        btc = [m["event"] for m in events if m["market"] == "BTC-USD"]
        assert [e["seq"] for e in btc] == sorted(e["seq"] for e in btc)
        assert btc[-1]["seq"] < last  # bob's cancel_all is not alice's business
        for event in btc:
            if event["type"] == "fill":
                assert event["maker_user"] == "alice" and "taker_user" not in event
            else:
                assert event["user"] == "alice"
        assert [e["type"] for e in btc].count("accepted") == 4
        assert {(f["trade_id"]) for f in own_fills} == {
            e["trade_id"] for e in btc if e["type"] == "fill"
        }
        eth_events = [m["event"] for m in events if m["market"] == "ETH-USD"]
        assert eth_events == eth["events"]
        # live orders implied by the stream agree with the orders query
        live = {o["order_id"] for o in own_orders if o["market"] == "BTC-USD"}
        accepted = {e["order_id"] for e in btc if e["type"] == "accepted"}
        done = {e["order_id"] for e in btc if e["type"] == "cancelled"}
        assert live <= accepted - done and live


async def test_unsubscribe_stops_messages(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        channels = [{"name": "trades", "market": "BTC-USD"}, {"name": "book", "market": "BTC-USD"}]
        await call(ws, {"op": "subscribe", "id": 1, "channels": channels})
        assert (await recv(ws))["type"] == "snapshot"
        reply = await call(ws, {"op": "unsubscribe", "id": 2, "channels": channels})
        assert reply["ok"] is True
        await trade_a_bit(gw.url, gw.keys)
        await settle(gw)
        assert await until_barrier(ws) == []
        assert all(feed.subscriber_count() == 0 for feed in gw.context.feeds.values())


async def test_slow_consumer_is_told_and_disconnected(tmp_path: Path) -> None:
    settings = GatewaySettings(outbound_buffer=20, slow_consumer_grace_seconds=10.0)
    async with running_gateway(tmp_path, settings) as gw:
        backend = gw.backends["BTC-USD"]
        for i in range(300):  # a deep book makes every snapshot several kilobytes
            price = f"{1000 + i}.00"
            await backend.submit(
                {
                    "type": "new_order",
                    "market": "BTC-USD",
                    "user": "mm",
                    "side": "sell",
                    "order_type": "limit",
                    "price": price,
                    "qty": "1",
                }
            )
        async with raw(gw.url, message_queue_size=1) as slow, open_client(gw.url) as healthy:
            channel = {"name": "book", "market": "BTC-USD"}
            for i in range(1500):  # each resubscribe sends a fresh snapshot; we read none
                await send(slow, {"op": "subscribe", "id": i, "channels": [channel]})
            with trio.fail_after(20):
                while gw.context.stats.slow_consumers == 0:
                    await trio.sleep(0.05)
            assert await healthy.ping()  # other connections are unaffected
            seen: list[dict[str, Any]] = []
            try:
                with trio.fail_after(20):
                    while True:
                        seen.append(await recv(slow))
            except ConnectionClosed as exc:
                assert exc.reason.code == 1008
            assert seen[-1] == {"channel": "system", "type": "slow_consumer"}
            assert len(seen) < 1500 * 2  # the backlog was dropped, not delivered
        with trio.fail_after(5):
            while gw.context.stats.connections:
                await trio.sleep(0.01)
        assert all(feed.subscriber_count() == 0 for feed in gw.context.feeds.values())


async def test_a_flood_from_one_connection_does_not_starve_another(tmp_path: Path) -> None:
    count = 1500
    async with (
        running_gateway(tmp_path) as gw,
        raw(gw.url) as flood,
        open_client(gw.url, api_key=gw.keys["bob"]) as bob,
    ):
        await call(flood, {"op": "auth", "id": "a", "api_key": gw.keys["alice"]})
        sent = 0
        latency: list[float] = []
        bob_seq: list[int] = []

        async def flood_it() -> None:
            nonlocal sent
            for i in range(count):
                order = {"market": "BTC-USD", "side": "buy", "order_type": "limit"}
                await send(
                    flood, {"op": "new_order", "id": i, "price": "1.00", "qty": "1", **order}
                )
                sent += 1

        async def meanwhile() -> None:
            while sent < count // 5:
                await trio.sleep(0.001)
            start = trio.current_time()
            result = await bob.new_order("BTC-USD", "sell", "1", "500.00")
            latency.append(trio.current_time() - start)
            bob_seq.append(result["seq"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood_it)
            nursery.start_soon(meanwhile)
        replies = [await recv(flood) for _ in range(count)]
        assert sorted(r["id"] for r in replies) == list(range(count))
        ok_seqs = [r["result"]["seq"] for r in replies if r["ok"]]
        assert len(ok_seqs) == count
        assert max(ok_seqs) > bob_seq[0]  # bob did not wait for the whole backlog
        assert latency[0] < 5.0


async def test_book_chain_survives_an_upstream_resync(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        backend = gw.backends["BTC-USD"]
        backend._history = type(backend._history)(backend._history, maxlen=3)
        channels = [{"name": "book", "market": "BTC-USD"}]
        await call(ws, {"op": "subscribe", "id": 1, "channels": channels})
        assert (await recv(ws))["type"] == "snapshot"
        order = {"type": "new_order", "market": "BTC-USD", "user": "mm", "order_type": "limit"}
        await backend.submit({**order, "side": "buy", "price": "10.00", "qty": "1"})
        first = await recv(ws)
        assert first["type"] == "update" and first["prev_seq"] == 1
        backend.drop_subscriptions()
        for i in range(10):  # more than the backend keeps: the feed must reload the book
            await backend.submit({**order, "side": "sell", "price": f"{20 + i}.00", "qty": "1"})
        resync = await recv(ws)
        assert resync["type"] == "update" and resync["prev_seq"] == first["seq"]
        assert resync["seq"] == backend.seq
        assert sorted(c[1] for c in resync["changes"]) == [f"{20 + i}.00" for i in range(10)]
        book = await call(ws, {"op": "book", "id": 2, "market": "BTC-USD", "depth": 100})
        assert len(book["result"]["asks"]) == 10

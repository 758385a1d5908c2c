"""The client library: replies by id, errors, streams and their gap detection."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway.client import ClientError, open_client
from gateway.client_streams import LocalBook
from tests.gateway_harness import running_gateway


def test_local_book_detects_a_missing_update() -> None:
    book = LocalBook("M")
    assert not book.ready
    assert book.apply({"type": "update", "seq": 3, "prev_seq": 2, "changes": []}) is False
    book.apply({"type": "snapshot", "seq": 5, "bids": [["10.0", "1"]], "asks": [["11.0", "2"]]})
    assert book.apply(
        {
            "type": "update",
            "seq": 7,
            "prev_seq": 5,
            "changes": [["buy", "10.5", "3"], ["sell", "11.0", "0"]],
        }
    )
    view = book.view()
    assert view.seq == 7 and view.bids == (("10.5", "3"), ("10.0", "1")) and view.asks == ()
    assert book.apply({"type": "update", "seq": 9, "prev_seq": 8, "changes": []}) is False
    assert not book.ready  # stale until the next snapshot


async def test_concurrent_requests_are_matched_by_id(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, open_client(gw.url, api_key=gw.keys["alice"]) as c:
        results: dict[int, int] = {}

        async def place(i: int) -> None:
            market = "BTC-USD" if i % 2 else "ETH-USD"
            reply = await c.new_order(market, "buy", "1", "1.00", client_order_id=f"o{i}")
            results[i] = reply["events"][0]["client_order_id"]

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(place, i)
        assert results == {i: f"o{i}" for i in range(40)}


async def test_errors_raise_client_error(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, open_client(gw.url) as c:
        with pytest.raises(ClientError) as info:
            await c.orders()
        assert info.value.code == "unauthenticated" and not info.value.retryable
        with pytest.raises(ClientError) as info:
            await c.book("NOPE")
        assert info.value.code == "unknown_market"
        markets = await c.markets()
        assert [(m["market"], m["status"]) for m in markets] == [
            ("BTC-USD", "open"),
            ("ETH-USD", "open"),
        ]
        assert (await c.ping()).endswith("Z")
        with pytest.raises(ClientError) as info:
            await c.request("ping", pad="x" * 70_000)
        assert info.value.code == "too_large"
        assert (await c.ping()).endswith("Z")


async def test_book_stream_resubscribes_after_an_injected_gap(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"]) as c,
        c.book_stream("BTC-USD") as stream,
    ):
        first = await stream.__anext__()
        assert first.seq == 1 and first.bids == ()
        await c.new_order("BTC-USD", "buy", "1", "10.00")
        second = await stream.__anext__()
        assert second.bids == (("10.00", "1.000"),)
        # a message that does not chain (as if one had been lost on the way)
        c._streams[("book", "BTC-USD")].put(
            {
                "channel": "book",
                "market": "BTC-USD",
                "type": "update",
                "seq": 99,
                "prev_seq": 98,
                "changes": [["buy", "5.00", "1"]],
            }
        )
        await c.new_order("BTC-USD", "buy", "2", "9.00")
        view = await stream.__anext__()
        assert stream.resyncs == 1
        queried = await c.book("BTC-USD")
        assert view.seq == queried["seq"]
        assert list(view.bids) == [tuple(level) for level in queried["bids"]]


async def test_book_stream_recovers_from_its_own_overflow(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"], stream_queue=3) as c,
        c.book_stream("BTC-USD") as stream,
    ):
        for i in range(30):  # not reading: the local queue overflows
            await c.new_order("BTC-USD", "buy", "1", f"{10 + i}.00")
        queried = await c.book("BTC-USD", depth=100)
        with trio.fail_after(5):
            async for view in stream:
                if view.seq == queried["seq"]:
                    break
        assert stream.resyncs >= 1
        assert list(view.bids) == [tuple(level) for level in queried["bids"]]
        assert len(view.bids) == 30


async def test_trade_stream_flags_a_jump_in_trade_ids(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"]) as alice,
        open_client(gw.url, api_key=gw.keys["bob"]) as bob,
        bob.trades_stream("BTC-USD") as trades,
    ):
        for _ in range(3):
            await alice.new_order("BTC-USD", "sell", "1", "10.00")
        await bob.new_order("BTC-USD", "buy", "1", "10.00")
        t1 = await trades.__anext__()
        assert (t1.trade_id, t1.after_gap) == (1, False)
        await bob.unsubscribe([{"name": "trades", "market": "BTC-USD"}])
        await bob.new_order("BTC-USD", "buy", "1", "10.00")  # trade 2, not seen
        await bob.subscribe([{"name": "trades", "market": "BTC-USD"}])
        await bob.new_order("BTC-USD", "buy", "1", "10.00")
        t3 = await trades.__anext__()
        assert (t3.trade_id, t3.after_gap, trades.gaps) == (3, True, 1)


async def test_user_stream_through_the_library(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"]) as alice,
        alice.user_stream() as mine,
    ):
        placed = await alice.new_order("ETH-USD", "buy", "1", "3.00")
        event = await mine.__anext__()
        assert event.market == "ETH-USD" and event.event == placed["events"][0]

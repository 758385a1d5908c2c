"""Random traffic through the gateway agrees with replaying it on a bare engine.

Two users send random commands to two markets through real WebSocket
connections; every reply must equal what a fresh engine (one per market, as
in the replicated system) produces for the same commands, with other users'
names removed; each user's stream must hold exactly their events; the book
stream must end equal to the book query.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import trio
import trio.testing

from clob.engine import Engine
from gateway.client import GatewayClient, open_client
from gateway.client_streams import BookView
from gateway.privacy import redact
from tests.gateway_harness import MARKETS, running_gateway


def random_request(rng: random.Random, live: list[tuple[str, int]]) -> tuple[str, dict[str, Any]]:
    market = rng.choice([m for m, _, _ in MARKETS])
    roll = rng.random()
    if roll < 0.6 or not live:
        fields: dict[str, Any] = {
            "market": market,
            "side": rng.choice(("buy", "sell")),
            "qty": rng.choice(("1", "2", "0.5")),
            "order_type": "limit",
            "price": f"{100 + rng.randint(-3, 3)}.00",
        }
        if rng.random() < 0.2:
            fields["tif"] = rng.choice(("ioc", "fok"))
        if rng.random() < 0.1:
            fields.update(order_type="market", price=None, tif=None)
        return "new_order", {k: v for k, v in fields.items() if v is not None}
    market, order_id = rng.choice(live)
    if roll < 0.8:
        return "cancel", {"market": market, "order_id": order_id}
    if roll < 0.95:
        return "amend", {"market": market, "order_id": order_id, "qty": "1"}
    return "cancel_all", {"market": market}


async def test_random_traffic_matches_a_direct_replay(tmp_path: Path) -> None:
    rng = random.Random(7)
    sent: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []  # user, op, fields, reply
    streams: dict[str, list[dict[str, Any]]] = {"alice": [], "bob": []}
    views: list[BookView] = []
    resyncs: list[int] = []
    async with (
        running_gateway(tmp_path) as gw,
        open_client(gw.url, api_key=gw.keys["alice"]) as alice,
        open_client(gw.url, api_key=gw.keys["bob"]) as bob,
        trio.open_nursery() as nursery,
    ):
        clients: dict[str, GatewayClient] = {"alice": alice, "bob": bob}

        # Each recorder reports started once its subscription is acknowledged, so
        # no command below can run before the streams exist.
        async def record_user(name: str, *, task_status: trio.TaskStatus[None]) -> None:
            async with clients[name].user_stream() as stream:
                task_status.started()
                async for item in stream:
                    streams[name].append({"market": item.market, **item.event})

        async def record_book(*, task_status: trio.TaskStatus[None]) -> None:
            async with bob.book_stream("BTC-USD") as stream:
                task_status.started()
                async for view in stream:
                    views.append(view)
                    resyncs.append(stream.resyncs)

        await nursery.start(record_user, "alice")
        await nursery.start(record_user, "bob")
        await nursery.start(record_book)
        live: dict[str, list[tuple[str, int]]] = {"alice": [], "bob": []}
        for _ in range(200):
            user = rng.choice(("alice", "bob"))
            op, fields = random_request(rng, live[user])
            reply = await clients[user].request(op, **fields)
            sent.append((user, op, fields, reply))
            for event in reply["events"]:
                if event["type"] == "accepted" and event["user"] == user:
                    live[user].append((event["market"], event["order_id"]))
        # barrier: the feeds have applied everything, each connection's stream messages
        # precede its ping reply, and the recorders have taken what the readers got
        with trio.fail_after(10):
            while any(gw.context.feeds[m].seq < b.seq for m, b in gw.backends.items()):
                await trio.sleep(0.01)
        await alice.ping()
        await bob.ping()
        await trio.testing.wait_all_tasks_blocked()
        final_book = await bob.book("BTC-USD", depth=1000)
        nursery.cancel_scope.cancel()

    engines = {m: Engine() for m, _, _ in MARKETS}
    seqs = dict.fromkeys(engines, 1)
    for market, tick, lot in MARKETS:
        create = {"type": "create_market", "market": market, "tick_size": tick, "lot_size": lot}
        engines[market].execute(create, 1)
    expected_streams: dict[str, list[dict[str, Any]]] = {"alice": [], "bob": []}
    for user, op, fields, reply in sent:
        market = fields["market"]
        seqs[market] += 1
        engine = engines[market]
        events = [
            engine.encode(e)
            for e in engine.execute({"type": op, "user": user, **fields}, seqs[market])
        ]
        assert reply == {"seq": seqs[market], "events": [redact(e, user) for e in events]}
        for event in events:
            for who in ("alice", "bob"):
                mine = event.get("user") == who or who in (
                    event.get("maker_user"),
                    event.get("taker_user"),
                )
                if mine and event["type"] in ("accepted", "fill", "cancelled", "amended"):
                    expected_streams[who].append({"market": market, **redact(event, who)})
    for who in ("alice", "bob"):
        by_market = lambda rows, m: [r for r in rows if r["market"] == m]  # noqa: E731
        for market, _, _ in MARKETS:
            assert by_market(streams[who], market) == by_market(expected_streams[who], market)
    view = views[-1]
    assert resyncs[-1] == 0 and len(views) > 10
    assert view.seq <= final_book["seq"]  # updates come only for commands that change a level
    assert list(view.bids) == [tuple(x) for x in final_book["bids"]]
    assert list(view.asks) == [tuple(x) for x in final_book["asks"]]

"""When trades happened: the leader's stamp rows, the state machine's time, each trade's time.

ENGINE.md orders a user's fills without a market "in the order they
happened, across markets"; each market is its own replica group, so the
groups report each trade's time as its leader stamped the batch
(shard/tradetimes.py) and the gateway merges by it.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
import orjson
import pytest

from clob.engine import Engine
from gateway.routing import fills_reply, merge_fills
from shard.engineapp import EngineApplication
from shard.node.api import CommandResult
from shard.proposals import STAMP, Proposal, decode_rows, encode_batch, stamp_row
from shard.records import Entry, EntryKind
from shard.sessions import REGISTER, Verdict
from shard.statemachine import RegisterApplication, ReplicatedStateMachine
from shard.tradetimes import TradeTimes


def test_trade_times_keep_runs_and_answer_zero_for_unknown_trades() -> None:
    times = TradeTimes()
    times.note("ETH", 3, 100)  # trades 1..3 at 100
    times.note("ETH", 3, 200)  # nothing new
    times.note("ETH", 5, 100)  # 4..5: the same time, so the same run
    times.note("ETH", 6, 300)
    times.note("BTC", 1, 250)
    assert [times.time_of("ETH", t) for t in range(0, 8)] == [0, 100, 100, 100, 100, 100, 300, 0]
    assert times.time_of("BTC", 1) == 250 and times.time_of("XRP", 1) == 0
    plain = times.to_plain()
    assert [row[:2] for row in plain] == [["BTC", 1], ["ETH", 6]]  # by market name
    assert len(plain[1][2]) == 2 * 8  # two runs of 8-byte starts
    again = TradeTimes.from_plain(plain)
    assert again.to_plain() == plain
    assert [again.time_of("ETH", t) for t in range(1, 7)] == [100] * 5 + [300]


def test_trade_times_match_a_naive_map_on_random_notes() -> None:
    rng = random.Random(7)
    times, naive = TradeTimes(), {}
    last, now = 0, 0
    for _ in range(500):
        now += rng.choice((0, 0, 1, 5))
        if rng.random() < 0.7:
            for trade in range(last + 1, last + rng.randint(1, 4) + 1):
                naive[trade] = now
            last = max(naive)
        times.note("M", last, now)
    assert all(times.time_of("M", t) == naive.get(t, 0) for t in range(0, last + 3))
    assert TradeTimes.from_plain(times.to_plain()).to_plain() == times.to_plain()


def test_a_corrupt_trade_times_record_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        TradeTimes.from_plain([["M", 3, b"\x01" + b"\x00" * 7, b""]])


def _entry(index: int, *proposals: Proposal) -> Entry:
    return Entry(1, index, EntryKind.NORMAL, encode_batch(proposals))


def _stamp(now: int) -> Proposal:
    return Proposal(*stamp_row(now))


def test_stamp_rows_set_the_time_consume_no_seq_and_never_go_back() -> None:
    assert decode_rows(encode_batch([_stamp(5)])) == (("", STAMP, 5, b""),)
    sm = ReplicatedStateMachine(RegisterApplication())
    [registered] = sm.apply([_entry(1, Proposal("c", REGISTER, 0, b""))])
    client = registered.result
    outs = sm.apply(
        [
            _entry(2, _stamp(1_000), Proposal(client, 1, 1, b"a")),
            _entry(3, _stamp(900), Proposal(client, 2, 2, b"b")),  # a leader whose clock is behind
        ]
    )
    assert [(o.request_no, o.verdict, o.seq) for o in outs] == [
        (1, Verdict.NEW, 1),
        (2, Verdict.NEW, 2),
    ]  # no outcome for a stamp: nobody waits for it
    assert sm.time == 1_000
    assert sm.apply([_entry(4, _stamp(1_500))]) == []
    assert sm.seq == 2 and sm.time == 1_500


def test_the_time_survives_a_snapshot_and_an_older_snapshot_restores_without_it() -> None:
    sm = ReplicatedStateMachine(RegisterApplication())
    sm.apply([_entry(1, _stamp(42))])
    copy = ReplicatedStateMachine(RegisterApplication())
    copy.restore(sm.snapshot())
    assert copy.time == 42 and copy.snapshot() == sm.snapshot()
    # version 2: [version, index, term, seq, sessions, app], from before stamps
    fields = msgpack.unpackb(sm.snapshot(), raw=False)
    del fields[4]
    fields[0] = 2
    old = ReplicatedStateMachine(RegisterApplication())
    old.restore(msgpack.packb(fields, use_bin_type=True))
    assert old.time == 0 and old.applied_index == 1


def _command(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def _session_machine() -> tuple[ReplicatedStateMachine, EngineApplication, str]:
    app = EngineApplication()
    sm = ReplicatedStateMachine(app)
    [registered] = sm.apply([_entry(1, Proposal("gw", REGISTER, 0, b""))])
    return sm, app, str(registered.result)


def _limit(user: str, side: str, price: str, qty: str = "2") -> bytes:
    """A limit order in ETH as a replica receives it (JSON bytes)."""
    return _command(type="new_order", market="ETH", user=user, side=side, order_type="limit",
                    price=price, qty=qty)  # fmt: skip


def _create_eth() -> bytes:
    return _command(type="create_market", market="ETH", tick_size="0.01", lot_size="1")


def _trade(client: str, req: int, price: str) -> list[Proposal]:
    """User a sells 2 to user b at ``price``: two proposals, one trade."""
    sell, buy = _limit("a", "sell", price), _limit("b", "buy", price)
    return [Proposal(client, req, req, sell), Proposal(client, req + 1, req + 1, buy)]


def test_each_trade_gets_the_time_of_the_batch_that_made_it_and_the_query_reports_it() -> None:
    sm, app, gw = _session_machine()
    market = _create_eth()
    sm.apply([_entry(2, _stamp(1_000), Proposal(gw, 1, 1, market))])
    sm.apply([_entry(3, _stamp(2_000), *_trade(gw, 2, "10.00"))])
    sm.apply([_entry(4, _stamp(3_000), *_trade(gw, 4, "11.00"), *_trade(gw, 6, "12.00"))])
    fills = _command(type="fills", user="b")
    [result] = app.query(orjson.loads(fills), sm.seq)
    assert [f["price"] for f in result["fills"]] == ["10.00", "11.00", "12.00"]
    assert result["times"] == [2_000, 3_000, 3_000]
    assert "times" not in fills_reply(result) and fills_reply(result)["fills"] == result["fills"]
    # a replica restored from the snapshot reports the same times, and so do its new trades
    copy = ReplicatedStateMachine(EngineApplication())
    copy.restore(sm.snapshot())
    assert copy.snapshot() == sm.snapshot()
    for machine in (sm, copy):
        machine.apply([_entry(5, _stamp(4_000), *_trade(gw, 8, "13.00"))])
    assert copy.snapshot() == sm.snapshot()
    assert isinstance(copy.app, EngineApplication)
    [again] = copy.app.query(orjson.loads(fills), copy.seq)
    assert again["times"] == [2_000, 3_000, 3_000, 4_000]


def test_an_application_snapshot_from_before_trade_times_gives_old_trades_time_zero() -> None:
    sm, app, gw = _session_machine()
    market = _create_eth()
    sm.apply([_entry(2, _stamp(1_000), Proposal(gw, 1, 1, market), *_trade(gw, 2, "10.00"))])
    older = EngineApplication()
    older.restore(app.engine.snapshot())  # what an older build stored: the bare engine
    older.stamp(5_000)
    older.apply(9, _limit("a", "sell", "9.00", qty="1"))
    market_buy = _command(
        type="new_order", market="ETH", user="b", side="buy", order_type="market", qty="1"
    )
    older.apply(10, market_buy)
    [result] = older.query({"type": "fills", "user": "b"}, 10)
    assert result["times"] == [0, 5_000]
    assert Engine.restore(app.engine.snapshot()).snapshot() == app.engine.snapshot()


def _part(
    market: str, fills: list[tuple[int, int]], times: bool = True
) -> tuple[str, CommandResult]:
    event: dict[str, Any] = {
        "type": "fills",
        "user": "u",
        "fills": [{"market": market, "trade_id": t} for t, _ in fills],
        "next": None,
    }
    if times:
        event["times"] = [when for _, when in fills]
    return market, CommandResult(len(fills), [event])


def test_merge_orders_fills_by_time_then_market_and_trade_and_drops_times() -> None:
    parts = [
        _part("BTC", [(1, 20), (2, 40)]),
        _part("ETH", [(1, 10), (2, 40), (3, 50)]),
        _part("XRP", [(7, 0)], times=False),  # a replica that does not know: time 0
    ]
    merged = merge_fills(parts, "u", None)
    assert [(f["market"], f["trade_id"]) for f in merged["fills"]] == [
        ("XRP", 7),
        ("ETH", 1),
        ("BTC", 1),
        ("BTC", 2),  # same time as ETH 2: by market name
        ("ETH", 2),
        ("ETH", 3),
    ]
    assert "times" not in merged and merged["next"] is None
    assert [f["trade_id"] for f in merge_fills(parts, "u", 2)["fills"]] == [7, 1]


def test_a_fills_result_whose_times_do_not_match_its_fills_is_refused() -> None:
    market, result = _part("BTC", [(1, 20), (2, 30)])
    result.events[0]["times"] = [20]
    with pytest.raises(ValueError, match="2 fills and 1 times"):
        merge_fills([(market, result)], "u", None)


def test_a_trade_made_by_an_amend_gets_its_batch_time() -> None:
    sm, app, gw = _session_machine()
    sell, buy = _limit("a", "sell", "14.00", qty="1"), _limit("b", "buy", "13.00", qty="1")
    rows = ((1, _create_eth()), (2, sell), (3, buy))
    sm.apply([_entry(2, _stamp(1_000), *(Proposal(gw, r, r, c) for r, c in rows))])
    amend = _command(type="amend", market="ETH", user="b", order_id=2, price="14.00")
    [outcome] = sm.apply([_entry(3, _stamp(7_000), Proposal(gw, 4, 4, amend))])
    assert [e["type"] for e in outcome.result[0]] == ["amended", "fill"]
    [result] = app.query({"type": "fills", "user": "b"}, sm.seq)
    assert result["times"] == [7_000]

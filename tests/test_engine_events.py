"""Engine events as records: value equality, hashing, repr, field order, immutability."""

from __future__ import annotations

import gc

import pytest

import clob
from clob.engine import Engine
from clob.events import Accepted, Amended, Cancelled, Fill, Rejected


def _fill(**changes: object) -> Fill:
    fields: dict[str, object] = {
        "seq": 7,
        "market": "BTC-USD",
        "trade_id": 1,
        "price": 10_000,
        "qty": 5,
        "taker_order_id": 2,
        "maker_order_id": 1,
        "taker_user": "bob",
        "maker_user": "alice",
        "taker_side": "buy",
        "taker_client_order_id": None,
        "maker_client_order_id": "a1",
    }
    fields.update(changes)
    return Fill(**fields)  # type: ignore[arg-type]


def test_equal_fields_make_equal_events_with_equal_hashes() -> None:
    assert _fill() == _fill()
    assert hash(_fill()) == hash(_fill())
    assert _fill() != _fill(qty=6)
    assert _fill() != _fill(maker_client_order_id=None)
    assert len({_fill(), _fill(), _fill(trade_id=2)}) == 2
    amended = Amended(1, "BTC-USD", 3, "alice", 100, 2)
    assert amended == Amended(1, "BTC-USD", 3, "alice", 100, 2)
    assert hash(amended) == hash(Amended(1, "BTC-USD", 3, "alice", 100, 2))
    assert amended != Amended(1, "BTC-USD", 3, "alice", 100, 3)


def test_events_of_different_types_never_compare_equal() -> None:
    amended = Amended(1, "BTC-USD", 3, "alice", 100, 2)
    cancelled = Cancelled(1, "BTC-USD", 3, "alice", 100, "2")
    assert amended.values()[:5] == cancelled.values()[:5]
    assert amended != cancelled
    assert amended != amended.values()  # not a tuple any more


def test_values_and_repr_follow_constructor_order() -> None:
    rejected = Rejected(4, "bad_command", "no", user="bob")
    assert rejected.values() == (4, "bad_command", "no", None, "bob", None, None)
    assert Rejected.FIELDS[:3] == ("seq", "reason", "message")
    assert repr(rejected) == (
        "Rejected(seq=4, reason='bad_command', message='no', market=None, user='bob', "
        "client_order_id=None, order_id=None)"
    )


def test_engine_events_equal_freshly_built_ones() -> None:
    engine = Engine()
    engine.execute(
        {"type": "create_market", "market": "BTC-USD", "tick_size": "0.01", "lot_size": "1"}, 1
    )
    order = {
        "type": "new_order",
        "market": "BTC-USD",
        "user": "alice",
        "client_order_id": "a1",
        "side": "sell",
        "order_type": "limit",
        "price": "100.00",
        "qty": "5",
    }
    assert engine.execute(order, 2) == [
        Accepted(2, "BTC-USD", 1, "alice", "a1", "sell", "limit", 10_000, 5, "gtc", False)
    ]


@pytest.mark.skipif(
    clob.build_kind() != "compiled (mypyc)",
    reason="read-only attributes are enforced by the compiled build only (mypy checks the rest)",
)
def test_compiled_events_are_read_only() -> None:
    amended = Amended(1, "BTC-USD", 3, "alice", 100, 2)
    with pytest.raises(AttributeError):
        amended.qty = 1  # type: ignore[misc]
    assert amended.qty == 2
    with pytest.raises(AttributeError):
        _fill().qty = 1  # type: ignore[misc]


def test_the_fill_history_drops_out_of_the_cyclic_collector() -> None:
    engine = Engine()
    engine.execute(
        {"type": "create_market", "market": "BTC-USD", "tick_size": "1", "lot_size": "1"}, 1
    )
    for seq, (user, side) in enumerate((("alice", "sell"), ("bob", "buy")), 2):
        order = {"type": "new_order", "market": "BTC-USD", "user": user, "side": side,
                 "order_type": "limit", "price": "10", "qty": "1"}  # fmt: skip
        events = engine.execute(order, seq)
    (fill,) = [event for event in events if isinstance(event, Fill)]
    market = engine.markets["BTC-USD"]
    (row,) = market.user_fills["alice"]
    assert market.user_fills["bob"][0] is row and market.fill_event(row) == fill
    gc.collect()
    # the history is kept forever: full collections must not have to walk it
    assert not gc.is_tracked(row)

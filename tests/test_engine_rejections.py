"""Every rejection reason, the bad_command cases, check precedence, echoes."""

from __future__ import annotations

from typing import Any

import pytest

try:  # tests/ as plain directory or as a package
    from engine_harness import Session, reason
except ModuleNotFoundError:
    from tests.engine_harness import Session, reason

from clob.engine import Engine
from clob.events import REJECTION_PRECEDENCE


def ready() -> Session:
    s = Session()
    s.market()
    s.order("alice", "sell", "101", "1", client_order_id="live")
    return s


def order(**changes: Any) -> dict[str, Any]:
    command: dict[str, Any] = {
        "type": "new_order",
        "market": "BTC-USD",
        "user": "bob",
        "side": "buy",
        "order_type": "limit",
        "price": "100",
        "qty": "1",
    }
    command.update(changes)
    return {k: v for k, v in command.items() if v is not ...}


def test_precedence_order_is_the_spec_order() -> None:
    assert REJECTION_PRECEDENCE == (
        "bad_command",
        "unknown_market",
        "market_exists",
        "invalid_qty",
        "invalid_price",
        "invalid_tif",
        "unknown_order",
        "duplicate_client_order_id",
        "would_take",
    )


@pytest.mark.parametrize(
    "command",
    [
        None,
        [],
        "new_order",
        17,
        {},
        {"type": "nope"},
        {"type": 5},
        {"type": ["new_order"]},
        order(market=...),
        order(market=7),
        order(user=...),
        order(user=""),
        order(user="u" * 65),
        order(user=3),
        order(client_order_id=5),
        order(client_order_id="c" * 65),
        order(side="BUY"),
        order(side=...),
        order(order_type="stop"),
        order(order_type=...),
        order(price=...),
        order(price=100),
        order(price="1e2"),
        order(price="abc"),
        order(price=" 100"),
        order(price="1,5"),
        order(qty=...),
        order(qty=1),
        order(qty="NaN"),
        order(qty="Infinity"),
        order(tif="day"),
        order(tif=1),
        order(post_only="yes"),
        order(post_only=1),
        order(stp="none"),
        order(order_type="market", price=..., qty="x"),
        order(order_type="market", price=5),
        {"type": "cancel", "market": "BTC-USD", "user": "bob"},
        {"type": "cancel", "market": "BTC-USD", "user": "bob", "order_id": "1"},
        {"type": "cancel", "market": "BTC-USD", "user": "bob", "order_id": 1.0},
        {"type": "cancel", "market": "BTC-USD", "user": "bob", "order_id": True},
        {"type": "cancel", "market": "BTC-USD", "order_id": 1},
        {"type": "amend", "market": "BTC-USD", "user": "bob", "order_id": 1, "qty": 2},
        {"type": "cancel_all"},
        {"type": "cancel_all", "user": "u", "market": 3},
        {"type": "orders"},
        {"type": "fills", "user": ""},
        {"type": "book", "market": "BTC-USD", "depth": -1},
        {"type": "book", "market": "BTC-USD", "depth": "10"},
        {"type": "create_market", "market": "btc-usd", "tick_size": "1", "lot_size": "1"},
        {"type": "create_market", "market": "", "tick_size": "1", "lot_size": "1"},
        {"type": "create_market", "market": "A" * 33, "tick_size": "1", "lot_size": "1"},
        {"type": "create_market", "market": "A_B", "tick_size": "1", "lot_size": "1"},
        {"type": "create_market", "market": "AB", "tick_size": 1, "lot_size": "1"},
        {"type": "create_market", "market": "AB", "tick_size": "1"},
    ],
)
def test_bad_command(command: object) -> None:
    s = ready()
    before = s.engine.digest()
    assert reason(s.send(command)) == "bad_command"
    assert s.engine.digest() == before


def test_unknown_market_and_market_exists() -> None:
    s = ready()
    assert reason(s.send(order(market="ETH-USD"))) == "unknown_market"
    assert reason(s.run(type="cancel", market="X", user="u", order_id=1)) == "unknown_market"
    assert reason(s.run(type="amend", market="X", user="u", order_id=1, qty="1")) == (
        "unknown_market"
    )
    again = s.run(type="create_market", market="BTC-USD", tick_size="0.5", lot_size="1")
    assert reason(again) == "market_exists"


@pytest.mark.parametrize("qty", ["0", "-1", "0.0001", "1.0005", "-0"])
def test_invalid_qty(qty: str) -> None:
    assert reason(ready().send(order(qty=qty))) == "invalid_qty"


@pytest.mark.parametrize("price", ["0", "-100", "100.001", "0.00"])
def test_invalid_price(price: str) -> None:
    assert reason(ready().send(order(price=price))) == "invalid_price"


def test_out_of_range_quantity_is_invalid_qty() -> None:
    assert reason(ready().send(order(qty="9" * 30))) == "invalid_qty"


def test_market_order_with_price_is_invalid_price() -> None:
    assert reason(ready().send(order(order_type="market", price="100"))) == "invalid_price"


def test_invalid_tif() -> None:
    s = ready()
    assert reason(s.send(order(order_type="market", price=..., tif="gtc"))) == "invalid_tif"
    assert reason(s.send(order(tif="ioc", post_only=True))) == "invalid_tif"
    assert reason(s.send(order(tif="fok", post_only=True))) == "invalid_tif"
    assert reason(s.send(order(order_type="market", price=..., post_only=True))) == "invalid_tif"
    ok = s.send(order(order_type="market", price=..., post_only=False))
    assert ok[0]["type"] == "accepted"


def test_duplicate_client_order_id() -> None:
    s = ready()
    assert reason(s.send(order(user="alice", client_order_id="live"))) == (
        "duplicate_client_order_id"
    )


def test_create_market_sizes() -> None:
    s = Session()
    bad_lot = s.run(type="create_market", market="A", tick_size="0", lot_size="0")
    assert reason(bad_lot) == "invalid_qty"
    bad_tick = s.run(type="create_market", market="A", tick_size="-0.1", lot_size="1")
    assert reason(bad_tick) == "invalid_price"
    assert s.engine.market_specs() == []


def test_precedence_across_reasons() -> None:
    s = ready()
    # bad_command beats unknown_market
    assert reason(s.send(order(market="NOPE", side="up"))) == "bad_command"
    # unknown_market beats invalid_qty
    assert reason(s.send(order(market="NOPE", qty="0"))) == "unknown_market"
    # market_exists beats invalid sizes
    exists = s.run(type="create_market", market="BTC-USD", tick_size="0", lot_size="0")
    assert reason(exists) == "market_exists"
    # invalid_qty beats invalid_price beats invalid_tif
    assert reason(s.send(order(qty="0", price="0", tif="ioc", post_only=True))) == "invalid_qty"
    assert reason(s.send(order(price="0", tif="ioc", post_only=True))) == "invalid_price"
    # invalid_tif beats duplicate_client_order_id
    dup_tif = order(user="alice", client_order_id="live", tif="ioc", post_only=True)
    assert reason(s.send(dup_tif)) == "invalid_tif"
    # duplicate_client_order_id beats would_take
    dup_take = order(user="alice", client_order_id="live", price="101", post_only=True)
    assert reason(s.send(dup_take)) == "duplicate_client_order_id"
    # malformed decimal (bad_command) beats an unknown market
    assert reason(s.send(order(market="NOPE", price="1e3"))) == "bad_command"


def test_rejected_event_echoes_identifying_fields() -> None:
    s = ready()
    (row,) = s.send(order(market="NOPE", client_order_id="c9"))
    assert row == {
        "type": "rejected",
        "seq": 3,
        "reason": "unknown_market",
        "message": row["message"],
        "market": "NOPE",
        "user": "bob",
        "client_order_id": "c9",
    }
    assert isinstance(row["message"], str) and row["message"]
    (row,) = s.run(type="cancel", market="BTC-USD", user="bob", order_id=42)
    assert row["order_id"] == 42 and "client_order_id" not in row
    (row,) = s.send([1, 2])
    assert set(row) == {"type", "seq", "reason", "message"}


def test_rejections_never_change_state_or_consume_ids() -> None:
    s = ready()
    before = s.engine.digest()
    for command in (
        order(qty="0"),
        order(user="alice", client_order_id="live"),
        order(price="101", post_only=True),
        {"type": "cancel", "market": "BTC-USD", "user": "bob", "order_id": 1},
    ):
        s.send(command)
    assert s.engine.digest() == before
    assert s.send(order())[0]["order_id"] == 2


def test_execute_never_raises_on_odd_values() -> None:
    engine = Engine()
    odd: list[object] = [
        {"type": "new_order", "market": {"a": 1}},
        {"type": "new_order", "market": "BTC-USD", "user": "u", "side": {}, "qty": []},
        {"type": {"x": 1}},
        {1: 2},
        {"type": "cancel", "market": ["m"], "user": "u", "order_id": 1},
        {"type": "fills", "user": "u", "limit": 10**30},
    ]
    for i, command in enumerate(odd, 1):
        (event,) = engine.execute(command, i)
        assert engine.encode(event)["reason"] == "bad_command"


def test_out_of_range_order_id_is_rejected_and_not_echoed() -> None:
    s = ready()
    (row,) = s.run(type="cancel", market="BTC-USD", user="bob", order_id=-(2**63) - 1)
    assert row["reason"] == "unknown_order" and "order_id" not in row
    (row,) = s.run(type="cancel", market="BTC-USD", user="bob", order_id=2**64 - 1)
    assert row["order_id"] == 2**64 - 1

"""Self-trade prevention: cancel_taker, cancel_maker, cancel_both."""

from __future__ import annotations

try:  # tests/ as plain directory or as a package
    from engine_harness import Session, num, types
except ModuleNotFoundError:
    from tests.engine_harness import Session, num, types


def book_with_own_order_in_middle() -> Session:
    """Asks: other@100 x1, alice@100 x1, other@101 x1."""
    s = Session()
    s.market()
    s.order("bob", "sell", "100", "1")
    s.order("alice", "sell", "100", "1")
    s.order("carol", "sell", "101", "1")
    return s


def test_default_is_cancel_taker() -> None:
    s = book_with_own_order_in_middle()
    rows = s.order("alice", "buy", "101", "3")
    assert types(rows) == ["accepted", "fill", "cancelled"]
    assert rows[1]["maker_user"] == "bob"
    cancel = rows[2]
    assert cancel["order_id"] == rows[0]["order_id"] and cancel["reason"] == "stp"
    assert num(cancel["remaining_qty"]) == 2
    # matching stopped: alice's resting order and carol's are untouched; no rest
    assert s.book() == ([], [(100, 1), (101, 1)])


def test_cancel_maker_cancels_resting_and_continues() -> None:
    s = book_with_own_order_in_middle()
    rows = s.order("alice", "buy", "101", "3", stp="cancel_maker")
    assert types(rows) == ["accepted", "fill", "cancelled", "fill"]
    assert rows[2]["order_id"] == 2 and rows[2]["reason"] == "stp" and rows[2]["user"] == "alice"
    assert num(rows[2]["remaining_qty"]) == 1
    assert rows[3]["maker_user"] == "carol"
    # remainder (1) rests as a gtc bid at 101
    assert s.book() == ([(101, 1)], [])


def test_cancel_both_cancels_maker_then_taker() -> None:
    s = book_with_own_order_in_middle()
    rows = s.order("alice", "buy", "101", "3", stp="cancel_both")
    assert types(rows) == ["accepted", "fill", "cancelled", "cancelled"]
    assert rows[2]["order_id"] == 2 and rows[2]["reason"] == "stp"
    assert rows[3]["order_id"] == 4 and rows[3]["reason"] == "stp"
    assert num(rows[3]["remaining_qty"]) == 2
    assert s.book() == ([], [(101, 1)])


def test_no_order_trades_with_its_own_user() -> None:
    s = Session()
    s.market()
    s.order("alice", "sell", "100", "1")
    for stp in ("cancel_taker", "cancel_maker", "cancel_both"):
        rows = s.order("alice", "buy", "100", "1", stp=stp)
        assert "fill" not in types(rows)
        s.order("alice", "sell", "100", "1")


def test_stp_taker_cancel_on_ioc_gives_no_ioc_cancel() -> None:
    s = book_with_own_order_in_middle()
    rows = s.order("alice", "buy", "101", "3", tif="ioc")
    assert [r.get("reason") for r in rows if r["type"] == "cancelled"] == ["stp"]


def test_cancel_maker_last_order_of_level_removes_level() -> None:
    s = Session()
    s.market()
    s.order("alice", "sell", "100", "1")
    s.order("bob", "sell", "101", "1")
    rows = s.order("alice", "buy", "101", "1", stp="cancel_maker")
    assert types(rows) == ["accepted", "cancelled", "fill"]
    assert s.book() == ([], [])
    assert s.engine.take_level_changes()[-2:] == [
        ("BTC-USD", "sell", "100.00", "0.000"),
        ("BTC-USD", "sell", "101.00", "0.000"),
    ]

"""Fill-or-kill: the pre-walk and its interplay with self-trade prevention."""

from __future__ import annotations

try:  # tests/ as plain directory or as a package
    from engine_harness import Session, num, types
except ModuleNotFoundError:
    from tests.engine_harness import Session, num, types


def asks(*makers: tuple[str, str, str]) -> Session:
    s = Session()
    s.market()
    for user, price, qty in makers:
        s.order(user, "sell", price, qty)
    return s


def test_fok_fills_entirely_across_levels() -> None:
    s = asks(("a", "100", "1"), ("b", "101", "2"))
    rows = s.order("t", "buy", "101", "3", tif="fok")
    assert types(rows) == ["accepted", "fill", "fill"] and rows[0]["tif"] == "fok"
    assert s.book() == ([], [])


def test_fok_not_enough_has_no_effect() -> None:
    s = asks(("a", "100", "1"), ("b", "102", "2"))
    before = s.engine.digest()
    rows = s.order("t", "buy", "101", "2", tif="fok")
    assert types(rows) == ["accepted", "cancelled"]
    assert rows[1]["reason"] == "fok" and num(rows[1]["remaining_qty"]) == 2
    assert s.book() == ([], [(100, 1), (102, 2)])
    # only the order id counter moved
    assert s.engine.digest() != before
    assert s.order("t", "buy", "1", "1")[0]["order_id"] == 4


def test_fok_not_crossing_is_cancelled() -> None:
    s = asks(("a", "100", "1"))
    rows = s.order("t", "buy", "99", "1", tif="fok")
    assert types(rows) == ["accepted", "cancelled"] and rows[1]["reason"] == "fok"


def test_fok_market_order() -> None:
    s = asks(("a", "100", "1"), ("b", "900", "1"))
    rows = s.order("t", "buy", None, "2", tif="fok")
    assert rows[0]["tif"] == "fok" and types(rows) == ["accepted", "fill", "fill"]
    rows = s.order("t", "buy", None, "1", tif="fok")
    assert types(rows) == ["accepted", "cancelled"] and rows[1]["reason"] == "fok"


def test_fok_cancel_taker_walk_stops_at_own_order() -> None:
    s = asks(("a", "100", "1"), ("t", "100", "1"), ("b", "101", "5"))
    rows = s.order("t", "buy", "101", "2", tif="fok")
    assert types(rows) == ["accepted", "cancelled"] and rows[1]["reason"] == "fok"
    assert s.book()[1] == [(100, 2), (101, 5)]
    # enough before the own order: executes without reaching it
    rows = s.order("t", "buy", "101", "1", tif="fok")
    assert types(rows) == ["accepted", "fill"]


def test_fok_cancel_both_walk_stops_at_own_order() -> None:
    s = asks(("a", "100", "1"), ("t", "100", "1"), ("b", "101", "5"))
    rows = s.order("t", "buy", "101", "2", tif="fok", stp="cancel_both")
    assert types(rows) == ["accepted", "cancelled"] and rows[1]["reason"] == "fok"
    assert s.book()[1] == [(100, 2), (101, 5)]


def test_fok_cancel_maker_skips_own_orders_and_cancels_them_on_execution() -> None:
    s = asks(("a", "100", "1"), ("t", "100", "1"), ("b", "101", "5"))
    rows = s.order("t", "buy", "101", "2", tif="fok", stp="cancel_maker")
    assert types(rows) == ["accepted", "fill", "cancelled", "fill"]
    assert rows[2]["reason"] == "stp" and rows[2]["order_id"] == 2
    assert s.book()[1] == [(101, 4)]


def test_fok_cancel_maker_that_cannot_fill_cancels_nothing() -> None:
    s = asks(("a", "100", "1"), ("t", "100", "1"), ("b", "101", "1"))
    rows = s.order("t", "buy", "101", "3", tif="fok", stp="cancel_maker")
    assert types(rows) == ["accepted", "cancelled"] and rows[1]["reason"] == "fok"
    assert s.book()[1] == [(100, 2), (101, 1)]
    assert [o["order_id"] for o in s.orders("t")] == [2]


def test_fok_exact_quantity() -> None:
    s = asks(("a", "100", "1.5"))
    assert types(s.order("t", "buy", "100", "1.5", tif="fok")) == ["accepted", "fill"]

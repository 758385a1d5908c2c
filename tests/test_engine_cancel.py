"""Cancel and cancel_all."""

from __future__ import annotations

try:  # tests/ as plain directory or as a package
    from engine_harness import Session, num, reason, types
except ModuleNotFoundError:
    from tests.engine_harness import Session, num, reason, types


def test_cancel_by_order_id() -> None:
    s = Session()
    s.market()
    s.order("a", "buy", "100", "2")
    (row,) = s.run(type="cancel", market="BTC-USD", user="a", order_id=1)
    assert list(row) == [
        "type",
        "seq",
        "market",
        "order_id",
        "user",
        "remaining_qty",
        "reason",
    ]
    assert row["reason"] == "user" and num(row["remaining_qty"]) == 2
    assert s.book() == ([], [])


def test_cancel_by_client_order_id_reports_remaining() -> None:
    s = Session()
    s.market()
    s.order("a", "buy", "100", "2", client_order_id="c")
    s.order("b", "sell", "100", "0.5")
    (row,) = s.run(type="cancel", market="BTC-USD", user="a", client_order_id="c")
    assert row["order_id"] == 1 and num(row["remaining_qty"]) == num("1.5")


def test_cancel_unknown_or_foreign_order_gets_same_reply() -> None:
    s = Session()
    s.market()
    s.order("a", "buy", "100", "2", client_order_id="c")
    foreign = s.run(type="cancel", market="BTC-USD", user="b", order_id=1)
    missing = s.run(type="cancel", market="BTC-USD", user="b", order_id=7)
    assert reason(foreign) == reason(missing) == "unknown_order"
    assert foreign[0]["message"] == missing[0]["message"]
    assert reason(s.run(type="cancel", market="BTC-USD", user="b", client_order_id="c")) == (
        "unknown_order"
    )
    s.run(type="cancel", market="BTC-USD", user="a", order_id=1)
    again = s.run(type="cancel", market="BTC-USD", user="a", order_id=1)
    assert reason(again) == "unknown_order"
    assert again[0]["order_id"] == 1 and again[0]["user"] == "a"


def test_cancel_needs_exactly_one_id() -> None:
    s = Session()
    s.market()
    assert reason(s.run(type="cancel", market="BTC-USD", user="a")) == "bad_command"


def test_cancel_all_across_markets_in_name_then_id_order() -> None:
    s = Session()
    s.market("ZZZ")
    s.market("AAA")
    s.order("u", "buy", "1", "1", market="ZZZ")
    s.order("u", "sell", "5", "1", market="AAA")
    s.order("u", "buy", "1", "1", market="AAA")
    s.order("v", "buy", "1", "1", market="AAA")
    s.order("u", "buy", "2", "1", market="ZZZ")
    rows = s.run(type="cancel_all", user="u")
    assert types(rows) == ["cancelled"] * 4
    assert [(r["market"], r["order_id"]) for r in rows] == [
        ("AAA", 1),
        ("AAA", 2),
        ("ZZZ", 1),
        ("ZZZ", 2),
    ]
    assert {r["reason"] for r in rows} == {"cancel_all"}
    assert s.orders("v")[0]["order_id"] == 3


def test_cancel_all_one_market_and_nothing_to_cancel() -> None:
    s = Session()
    s.market("AAA")
    s.market("BBB")
    s.order("u", "buy", "1", "1", market="AAA")
    s.order("u", "buy", "1", "1", market="BBB")
    rows = s.run(type="cancel_all", user="u", market="BBB")
    assert [r["market"] for r in rows] == ["BBB"]
    assert s.run(type="cancel_all", user="nobody") == []
    assert reason(s.run(type="cancel_all", user="u", market="CCC")) == "unknown_market"


def test_cancel_all_keeps_id_order_after_amends() -> None:
    s = Session()
    s.market()
    for price in ("1", "2", "3"):
        s.order("u", "buy", price, "1")
    s.run(type="amend", market="BTC-USD", user="u", order_id=1, price="1.5", qty="5")
    rows = s.run(type="cancel_all", user="u")
    assert [r["order_id"] for r in rows] == [1, 2, 3]

"""Amend: queue priority, re-pricing, matching at the amended price, post-only."""

from __future__ import annotations

try:  # tests/ as plain directory or as a package
    from engine_harness import Session, num, reason, types
except ModuleNotFoundError:
    from tests.engine_harness import Session, num, reason, types


def bids_at_100() -> Session:
    """Bids at 100: alice (id 1, 2 lots of 1), bob (id 2, 1)."""
    s = Session()
    s.market()
    s.order("alice", "buy", "100", "2", client_order_id="a1")
    s.order("bob", "buy", "100", "1")
    return s


def first_maker_at_100(s: Session) -> str:
    maker: str = s.order("x", "sell", "100", "0.001")[1]["maker_user"]
    return maker


def test_amended_event_shape() -> None:
    s = bids_at_100()
    (row,) = s.run(type="amend", market="BTC-USD", user="alice", order_id=1, qty="1.5")
    assert list(row) == ["type", "seq", "market", "order_id", "user", "price", "qty"]
    assert row["type"] == "amended" and row["order_id"] == 1 and row["user"] == "alice"
    assert num(row["price"]) == 100 and num(row["qty"]) == num("1.5")


def test_lower_qty_same_price_keeps_queue_place() -> None:
    s = bids_at_100()
    s.run(type="amend", market="BTC-USD", user="alice", order_id=1, qty="1")
    assert first_maker_at_100(s) == "alice"
    assert s.book()[0] == [(100, num("1.999"))]


def test_same_qty_same_price_keeps_queue_place() -> None:
    s = bids_at_100()
    rows = s.run(type="amend", market="BTC-USD", user="alice", order_id=1, price="100", qty="2")
    assert types(rows) == ["amended"]
    assert first_maker_at_100(s) == "alice"


def test_larger_qty_goes_to_back_of_queue() -> None:
    s = bids_at_100()
    s.run(type="amend", market="BTC-USD", user="alice", order_id=1, qty="3")
    assert first_maker_at_100(s) == "bob"
    assert s.book()[0] == [(100, num("3.999"))]


def test_new_price_goes_to_back_at_new_price() -> None:
    s = bids_at_100()
    s.order("carol", "buy", "99", "1")
    s.run(type="amend", market="BTC-USD", user="bob", order_id=2, price="99")
    fills = s.order("x", "sell", "99", "4")
    assert [r["maker_user"] for r in fills if r["type"] == "fill"] == ["alice", "carol", "bob"]


def test_qty_is_new_remaining_quantity_after_partial_fill() -> None:
    s = bids_at_100()
    s.order("x", "sell", "100", "1.5")  # alice has 0.5 left
    s.run(type="amend", market="BTC-USD", user="alice", order_id=1, qty="1")
    (order,) = s.orders("alice")
    assert num(order["qty"]) == 1 and num(order["filled_qty"]) == num("1.5")
    # a larger remaining quantity sends it behind bob
    assert first_maker_at_100(s) == "bob"


def test_amend_by_client_order_id() -> None:
    s = bids_at_100()
    rows = s.run(type="amend", market="BTC-USD", user="alice", client_order_id="a1", qty="1")
    assert rows[0]["type"] == "amended" and rows[0]["order_id"] == 1


def test_amended_price_that_crosses_matches_like_incoming_order() -> None:
    s = Session()
    s.market()
    s.order("m", "sell", "101", "1")
    s.order("n", "sell", "102", "1")
    s.order("a", "buy", "100", "3", client_order_id="q")
    rows = s.run(type="amend", market="BTC-USD", user="a", order_id=3, price="101.5")
    assert types(rows) == ["amended", "fill"]
    assert num(rows[0]["price"]) == num("101.5") and num(rows[0]["qty"]) == 3
    fill = rows[1]
    assert fill["taker_order_id"] == 3 and fill["maker_user"] == "m"
    assert num(fill["price"]) == 101 and fill["taker_side"] == "buy"
    (order,) = s.orders("a")
    assert num(order["price"]) == num("101.5") and num(order["qty"]) == 2
    assert num(order["filled_qty"]) == 1 and order["client_order_id"] == "q"


def test_amend_that_fills_entirely_removes_order() -> None:
    s = Session()
    s.market()
    s.order("m", "sell", "101", "5")
    s.order("a", "buy", "100", "2", client_order_id="q")
    rows = s.run(type="amend", market="BTC-USD", user="a", order_id=2, price="101")
    assert types(rows) == ["amended", "fill"]
    assert s.orders("a") == []
    assert s.book() == ([], [(101, 3)])
    assert reason(s.run(type="cancel", market="BTC-USD", user="a", order_id=2)) == "unknown_order"
    assert s.order("a", "buy", "1", "1", client_order_id="q")[0]["type"] == "accepted"


def test_amend_match_respects_self_trade_prevention() -> None:
    s = Session()
    s.market()
    s.order("a", "sell", "101", "1")
    s.order("a", "buy", "100", "2", stp="cancel_taker")
    rows = s.run(type="amend", market="BTC-USD", user="a", order_id=2, price="101")
    assert types(rows) == ["amended", "cancelled"]
    assert rows[1]["order_id"] == 2 and rows[1]["reason"] == "stp"
    assert [o["order_id"] for o in s.orders("a")] == [1]


def test_amend_match_cancel_maker_stp_continues_and_rests() -> None:
    s = Session()
    s.market()
    s.order("a", "sell", "101", "1")
    s.order("a", "buy", "100", "2", stp="cancel_maker")
    rows = s.run(type="amend", market="BTC-USD", user="a", order_id=2, price="101")
    assert types(rows) == ["amended", "cancelled"] and rows[1]["order_id"] == 1
    assert s.book() == ([(101, 2)], [])


def test_post_only_amend_that_would_take_is_rejected_and_unchanged() -> None:
    s = Session()
    s.market()
    s.order("m", "sell", "101", "1")
    s.order("a", "buy", "100", "2", post_only=True)
    s.order("b", "buy", "100", "1")
    before = s.engine.digest()
    rows = s.run(type="amend", market="BTC-USD", user="a", order_id=2, price="101", qty="1")
    assert reason(rows) == "would_take"
    assert s.engine.digest() == before
    assert first_maker_at_100(s) == "a"


def test_post_only_amend_to_non_crossing_price_is_fine() -> None:
    s = Session()
    s.market()
    s.order("m", "sell", "101", "1")
    s.order("a", "buy", "100", "2", post_only=True)
    rows = s.run(type="amend", market="BTC-USD", user="a", order_id=2, price="100.99")
    assert types(rows) == ["amended"]
    assert s.orders("a")[0]["post_only"] is True


def test_amend_needs_price_or_qty() -> None:
    s = bids_at_100()
    assert reason(s.run(type="amend", market="BTC-USD", user="alice", order_id=1)) == (
        "bad_command"
    )


def test_amend_precedence_invalid_qty_before_invalid_price_before_unknown_order() -> None:
    s = bids_at_100()
    base = {"type": "amend", "market": "BTC-USD", "user": "alice"}
    assert reason(s.send({**base, "order_id": 99, "qty": "0", "price": "0"})) == "invalid_qty"
    assert reason(s.send({**base, "order_id": 99, "qty": "1", "price": "0"})) == "invalid_price"
    assert reason(s.send({**base, "order_id": 99, "qty": "1"})) == "unknown_order"
    assert reason(s.send({**base, "order_id": 2, "qty": "1"})) == "unknown_order"  # bob's


def test_amend_cannot_push_filled_plus_remaining_out_of_range() -> None:
    """Amend-and-fill cycles would grow an order's filled quantity without bound (past the
    64 bits a snapshot stores); filled + remaining stays below 10^18 lots, like a new order."""
    s = Session()
    s.market(tick="1", lot="1")
    top = "999999999999999999"  # the largest quantity in range
    s.order("maker", "sell", "100", top)
    s.order("taker", "buy", "100", "999999999999999000")
    (row,) = s.run(type="amend", market="BTC-USD", user="maker", order_id=1, qty="999")
    assert types([row]) == ["amended"]  # filled + remaining = 10^18 - 1: allowed
    (row,) = s.run(type="amend", market="BTC-USD", user="maker", order_id=1, qty="1000")
    assert reason([row]) == "invalid_qty" and row["order_id"] == 1
    (order,) = s.orders("maker")
    assert (order["qty"], order["filled_qty"]) == ("999", "999999999999999000")
    # still nothing a snapshot cannot hold
    s.order("taker", "buy", "100", "999")
    s.engine.restore(s.engine.snapshot())

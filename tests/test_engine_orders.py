"""New orders: acceptance, price-time priority, limit/market, gtc/ioc."""

from __future__ import annotations

try:  # tests/ as plain directory or as a package
    from engine_harness import Session, num, types
except ModuleNotFoundError:
    from tests.engine_harness import Session, num, types


def make() -> Session:
    s = Session()
    s.market()
    return s


def test_market_created_echoes_fields() -> None:
    s = Session()
    (row,) = s.run(type="create_market", market="ETH-USD", tick_size="0.05", lot_size="0.1")
    assert row["type"] == "market_created"
    assert row["seq"] == 1 and row["market"] == "ETH-USD"
    assert num(row["tick_size"]) == num("0.05") and num(row["lot_size"]) == num("0.1")
    assert s.engine.market_specs() == [("ETH-USD", "0.05", "0.1")]


def test_accepted_event_has_every_field_and_defaults() -> None:
    s = make()
    (row,) = s.order("alice", "buy", "100.25", "1.5")
    assert list(row) == [
        "type",
        "seq",
        "market",
        "order_id",
        "user",
        "client_order_id",
        "side",
        "order_type",
        "price",
        "qty",
        "tif",
        "post_only",
    ]
    assert row["seq"] == 2 and row["order_id"] == 1 and row["user"] == "alice"
    assert row["client_order_id"] is None
    assert (row["side"], row["order_type"], row["tif"], row["post_only"]) == (
        "buy",
        "limit",
        "gtc",
        False,
    )
    assert num(row["price"]) == num("100.25") and num(row["qty"]) == num("1.5")


def test_order_ids_and_trade_ids_count_per_market() -> None:
    s = make()
    s.market("ETH-USD")
    assert s.order("a", "sell", "10", "1")[0]["order_id"] == 1
    assert s.order("a", "sell", "10", "1", market="ETH-USD")[0]["order_id"] == 1
    assert s.order("a", "sell", "10", "1")[0]["order_id"] == 2
    fill = s.order("b", "buy", "10", "1", market="ETH-USD")[1]
    assert fill["type"] == "fill" and fill["trade_id"] == 1
    fill = s.order("b", "buy", "10", "1")[1]
    assert fill["trade_id"] == 1 and fill["maker_order_id"] == 1


def test_fill_is_at_maker_price_best_price_first() -> None:
    s = make()
    s.order("m1", "sell", "101", "1")
    s.order("m2", "sell", "100", "1")
    rows = s.order("t", "buy", "105", "2")
    assert types(rows) == ["accepted", "fill", "fill"]
    first, second = rows[1], rows[2]
    assert num(first["price"]) == 100 and first["maker_user"] == "m2"
    assert num(second["price"]) == 101 and second["maker_user"] == "m1"
    assert list(first) == [
        "type",
        "seq",
        "market",
        "trade_id",
        "price",
        "qty",
        "taker_order_id",
        "maker_order_id",
        "taker_user",
        "maker_user",
        "taker_side",
    ]
    assert first["taker_side"] == "buy" and first["taker_order_id"] == 3
    assert [first["trade_id"], second["trade_id"]] == [1, 2]


def test_time_priority_within_a_price() -> None:
    s = make()
    s.order("m1", "buy", "100", "1")
    s.order("m2", "buy", "100", "1")
    rows = s.order("t", "sell", "100", "1.5")
    assert [r["maker_user"] for r in rows if r["type"] == "fill"] == ["m1", "m2"]
    assert [num(r["qty"]) for r in rows if r["type"] == "fill"] == [1, num("0.5")]
    assert s.book()[0] == [(100, num("0.5"))]


def test_limit_stops_at_limit_price_and_remainder_rests() -> None:
    s = make()
    s.order("m1", "sell", "100", "1")
    s.order("m2", "sell", "102", "1")
    rows = s.order("t", "buy", "101", "3")
    assert types(rows) == ["accepted", "fill"]
    assert s.book() == ([(101, 2)], [(102, 1)])
    (order,) = s.orders("t")
    assert num(order["qty"]) == 2 and num(order["filled_qty"]) == 1


def test_new_order_rests_behind_orders_already_at_its_price() -> None:
    s = make()
    s.order("m6", "buy", "101", "1")
    s.order("t", "buy", "101", "3")
    s.order("m7", "buy", "101", "1")
    makers = [s.order("x", "sell", "101", "1")[1]["maker_user"] for _ in range(3)]
    assert makers == ["m6", "t", "t"]
    fills = s.order("x", "sell", "101", "2")
    assert [r["maker_user"] for r in fills[1:]] == ["t", "m7"]


def test_ioc_remainder_is_cancelled() -> None:
    s = make()
    s.order("m", "sell", "100", "1")
    rows = s.order("t", "buy", "100", "3", tif="ioc")
    assert types(rows) == ["accepted", "fill", "cancelled"]
    assert rows[2]["reason"] == "ioc" and num(rows[2]["remaining_qty"]) == 2
    assert rows[2]["order_id"] == rows[0]["order_id"]
    assert s.book() == ([], [])


def test_ioc_that_does_not_cross_is_cancelled_whole() -> None:
    s = make()
    rows = s.order("t", "buy", "100", "3", tif="ioc")
    assert types(rows) == ["accepted", "cancelled"]
    assert rows[1]["reason"] == "ioc" and num(rows[1]["remaining_qty"]) == 3


def test_fully_filled_taker_has_no_cancel() -> None:
    s = make()
    s.order("m", "sell", "100", "5")
    rows = s.order("t", "buy", "100", "3", tif="ioc")
    assert types(rows) == ["accepted", "fill"]
    assert s.book()[1] == [(100, 2)]


def test_market_order_takes_any_price_and_shows_ioc() -> None:
    s = make()
    s.order("m1", "sell", "100", "1")
    s.order("m2", "sell", "5000", "1")
    rows = s.order("t", "buy", None, "3")
    assert rows[0]["order_type"] == "market" and rows[0]["price"] is None
    assert rows[0]["tif"] == "ioc"
    assert types(rows) == ["accepted", "fill", "fill", "cancelled"]
    assert rows[3]["reason"] == "ioc" and num(rows[3]["remaining_qty"]) == 1


def test_market_order_on_empty_book_is_cancelled() -> None:
    s = make()
    rows = s.order("t", "sell", None, "1")
    assert types(rows) == ["accepted", "cancelled"] and rows[1]["reason"] == "ioc"


def test_market_order_explicit_ioc() -> None:
    s = make()
    rows = s.order("t", "sell", None, "1", tif="ioc")
    assert rows[0]["tif"] == "ioc"


def test_client_order_id_echoed_and_reusable_after_order_dies() -> None:
    s = make()
    rows = s.order("a", "buy", "100", "1", client_order_id="x1")
    assert rows[0]["client_order_id"] == "x1"
    s.order("b", "sell", "100", "1")  # fills x1 entirely
    again = s.order("a", "buy", "99", "1", client_order_id="x1")
    assert again[0]["type"] == "accepted"


def test_same_client_order_id_other_user_or_market_is_fine() -> None:
    s = make()
    s.market("ETH-USD")
    s.order("a", "buy", "100", "1", client_order_id="x")
    assert s.order("b", "buy", "100", "1", client_order_id="x")[0]["type"] == "accepted"
    rows = s.order("a", "buy", "100", "1", client_order_id="x", market="ETH-USD")
    assert rows[0]["type"] == "accepted"


def test_post_only_rests_when_not_crossing() -> None:
    s = make()
    s.order("m", "sell", "101", "1")
    rows = s.order("a", "buy", "100", "1", post_only=True)
    assert rows[0]["post_only"] is True and types(rows) == ["accepted"]
    assert s.orders("a")[0]["post_only"] is True


def test_rejected_post_only_leaves_no_trace() -> None:
    s = make()
    s.order("m", "sell", "100", "1")
    rows = s.order("a", "buy", "100", "1", post_only=True, client_order_id="p")
    assert rows[0]["reason"] == "would_take"
    # no order id consumed, client order id still free, book unchanged
    assert s.order("a", "buy", "99", "1", client_order_id="p")[0]["order_id"] == 2
    assert s.book() == ([(99, 1)], [(100, 1)])


def test_post_only_would_take_even_against_own_order() -> None:
    s = make()
    s.order("a", "sell", "100", "1")
    rows = s.order("a", "buy", "101", "1", post_only=True)
    assert rows[0]["reason"] == "would_take"


def test_trailing_zeros_and_step_multiples_accepted() -> None:
    s = make()
    rows = s.order("a", "buy", "100.2500", "1.000")
    assert rows[0]["type"] == "accepted" and num(rows[0]["price"]) == num("100.25")


def test_tick_size_not_power_of_ten() -> None:
    s = Session()
    s.market("X", tick="0.05", lot="5")
    assert s.order("a", "buy", "1.15", "10", market="X")[0]["type"] == "accepted"
    assert s.order("a", "buy", "1.17", "10", market="X")[0]["reason"] == "invalid_price"
    assert s.order("a", "buy", "1.15", "12", market="X")[0]["reason"] == "invalid_qty"

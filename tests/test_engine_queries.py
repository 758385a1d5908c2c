"""Queries: orders, fills (with pagination), book; level changes; specs."""

from __future__ import annotations

try:  # tests/ as plain directory or as a package
    from engine_harness import Session, num, reason
except ModuleNotFoundError:
    from tests.engine_harness import Session, num, reason


def test_queries_change_nothing() -> None:
    s = Session()
    s.market()
    s.order("a", "buy", "100", "1")
    before = s.engine.digest()
    s.run(type="orders", user="a")
    s.run(type="fills", user="a")
    s.run(type="book", market="BTC-USD")
    assert s.engine.digest() == before


def test_orders_lists_live_orders_by_market_then_id() -> None:
    s = Session()
    s.market("BBB")
    s.market("AAA")
    s.order("u", "buy", "1", "1", market="BBB", client_order_id="b1")
    s.order("u", "sell", "9", "2", market="AAA", post_only=True)
    s.order("u", "buy", "2", "1", market="BBB")
    s.order("w", "sell", "2", "0.25", market="BBB")
    (row,) = s.run(type="orders", user="u")
    assert row["type"] == "orders" and row["user"] == "u" and row["seq"] == 7
    orders = row["orders"]
    assert [(o["market"], o["order_id"]) for o in orders] == [("AAA", 1), ("BBB", 1), ("BBB", 2)]
    first = orders[0]
    assert list(first) == [
        "market",
        "order_id",
        "client_order_id",
        "side",
        "price",
        "qty",
        "filled_qty",
        "tif",
        "post_only",
    ]
    assert first["client_order_id"] is None and first["side"] == "sell"
    assert first["tif"] == "gtc" and first["post_only"] is True
    assert orders[1]["client_order_id"] == "b1"
    assert num(orders[2]["qty"]) == num("0.75") and num(orders[2]["filled_qty"]) == num("0.25")
    only = s.orders("u", market="AAA")
    assert [o["market"] for o in only] == ["AAA"]
    assert s.orders("nobody") == []
    assert reason(s.run(type="orders", user="u", market="NOPE")) == "unknown_market"


def trading_session() -> Session:
    """u trades 5 times in AAA (maker) and twice in BBB (taker), interleaved."""
    s = Session()
    s.market("AAA")
    s.market("BBB")
    for i in range(5):
        s.order("u", "sell", "10", "1", market="AAA", client_order_id=f"s{i}")
        s.order("t", "buy", "10", "1", market="AAA")
        if i in (1, 3):
            s.order("m", "sell", "7", "1", market="BBB")
            s.order("u", "buy", "7", "1", market="BBB")
    return s


def test_fills_oldest_first_across_markets_with_roles() -> None:
    s = trading_session()
    (row,) = s.run(type="fills", user="u")
    assert row["next"] is None
    fills = row["fills"]
    assert [(f["market"], f["trade_id"]) for f in fills] == [
        ("AAA", 1),
        ("AAA", 2),
        ("BBB", 1),
        ("AAA", 3),
        ("AAA", 4),
        ("BBB", 2),
        ("AAA", 5),
    ]
    maker = fills[0]
    assert list(maker) == [
        "market",
        "trade_id",
        "order_id",
        "client_order_id",
        "side",
        "price",
        "qty",
        "liquidity",
    ]
    assert maker["liquidity"] == "maker" and maker["side"] == "sell"
    assert maker["client_order_id"] == "s0" and maker["order_id"] == 1
    taker = fills[2]
    assert taker["liquidity"] == "taker" and taker["side"] == "buy"
    assert taker["client_order_id"] is None and num(taker["price"]) == 7
    (other,) = s.run(type="fills", user="t", market="AAA")
    assert [f["liquidity"] for f in other["fills"]] == ["taker"] * 5


def test_fills_pagination_within_a_market() -> None:
    s = trading_session()
    pages = []
    after = None
    while True:
        query = {"type": "fills", "user": "u", "market": "AAA", "limit": 2}
        if after is not None:
            query["after"] = after
        (row,) = s.send(query)
        pages.append([f["trade_id"] for f in row["fills"]])
        after = row["next"]
        if after is None:
            break
    assert pages == [[1, 2], [3, 4], [5]]
    (row,) = s.run(type="fills", user="u", market="AAA", after=3)
    assert [f["trade_id"] for f in row["fills"]] == [4, 5] and row["next"] is None
    (row,) = s.run(type="fills", user="u", market="AAA", limit=5)
    assert row["next"] is None  # exactly the last page
    (row,) = s.run(type="fills", user="u", market="AAA", after=5)
    assert row["fills"] == [] and row["next"] is None


def test_fills_limit_without_market_has_no_cursor() -> None:
    s = trading_session()
    (row,) = s.run(type="fills", user="u", limit=3)
    assert len(row["fills"]) == 3 and row["next"] is None


def test_fills_default_limit_is_100() -> None:
    s = Session()
    s.market()
    for _ in range(120):
        s.order("a", "sell", "1", "0.001")
        s.order("b", "buy", "1", "0.001")
    (row,) = s.run(type="fills", user="a", market="BTC-USD")
    assert len(row["fills"]) == 100 and row["next"] == 100
    (row,) = s.run(type="fills", user="a", market="BTC-USD", limit=1000)
    assert len(row["fills"]) == 120 and row["next"] is None


def test_fills_argument_checks() -> None:
    s = trading_session()
    assert reason(s.run(type="fills", user="u", after=1)) == "bad_command"
    assert reason(s.run(type="fills", user="u", limit=0)) == "bad_command"
    assert reason(s.run(type="fills", user="u", limit=1001)) == "bad_command"
    assert reason(s.run(type="fills", user="u", limit="5")) == "bad_command"
    assert reason(s.run(type="fills", user="u", market="AAA", after="1")) == "bad_command"
    assert reason(s.run(type="fills", user="u", market="ZZZ")) == "unknown_market"


def test_book_aggregates_levels_best_first_with_depth() -> None:
    s = Session()
    s.market()
    for price, qty in (("100", "1"), ("100", "2"), ("99", "1"), ("98", "1")):
        s.order("b", "buy", price, qty)
    for price in ("101", "103", "102"):
        s.order("a", "sell", price, "1")
    (row,) = s.run(type="book", market="BTC-USD", depth=2)
    assert list(row) == ["type", "seq", "market", "bids", "asks"]
    assert [[num(p), num(q)] for p, q in row["bids"]] == [[100, 3], [99, 1]]
    assert [[num(p), num(q)] for p, q in row["asks"]] == [[101, 1], [102, 1]]
    bids, asks = s.book()
    assert len(bids) == 3 and len(asks) == 3
    assert reason(s.run(type="book", market="BTC-USD", depth=0)) == "bad_command"
    assert reason(s.run(type="book", market="NOPE")) == "unknown_market"
    assert reason(s.run(type="book")) == "bad_command"


def test_book_default_depth_is_10() -> None:
    s = Session()
    s.market()
    for i in range(15):
        s.order("b", "buy", str(100 + i), "1")
    (row,) = s.run(type="book", market="BTC-USD")
    assert len(row["bids"]) == 10 and num(row["bids"][0][0]) == 114


def test_take_level_changes_reports_touched_levels_once() -> None:
    s = Session()
    s.market()
    assert s.engine.take_level_changes() == []
    s.order("b", "buy", "100", "1")
    s.order("b", "buy", "100", "2")
    s.order("a", "sell", "101", "1")
    changes = s.engine.take_level_changes()
    assert [(m, side, num(p), num(q)) for m, side, p, q in changes] == [
        ("BTC-USD", "buy", 100, 3),
        ("BTC-USD", "sell", 101, 1),
    ]
    assert s.engine.take_level_changes() == []
    s.order("t", "sell", "100", "3")
    changes = s.engine.take_level_changes()
    assert [(side, num(p), num(q)) for _, side, p, q in changes] == [("buy", 100, 0)]


def test_take_level_changes_on_amend_and_cancel() -> None:
    s = Session()
    s.market()
    s.order("b", "buy", "100", "2")
    s.engine.take_level_changes()
    s.run(type="amend", market="BTC-USD", user="b", order_id=1, qty="1")
    assert [num(c[3]) for c in s.engine.take_level_changes()] == [1]
    s.run(type="amend", market="BTC-USD", user="b", order_id=1, price="99")
    assert [(num(c[2]), num(c[3])) for c in s.engine.take_level_changes()] == [(100, 0), (99, 1)]
    s.run(type="cancel", market="BTC-USD", user="b", order_id=1)
    assert [(num(c[2]), num(c[3])) for c in s.engine.take_level_changes()] == [(99, 0)]
    s.run(type="book", market="BTC-USD")
    assert s.engine.take_level_changes() == []

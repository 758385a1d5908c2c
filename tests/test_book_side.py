"""BookSide: FIFO levels, O(1) removal anywhere, best price upkeep, depth."""

from __future__ import annotations

from clob.book import TOUCHED_FOLD_AT, BookSide, Order


def make(order_id: int, price: int, qty: int = 1, is_buy: bool = True) -> Order:
    return Order(order_id, f"u{order_id}", None, is_buy, price, qty, 0, "cancel_taker", False)


def test_bids_best_is_highest_and_levels_are_fifo() -> None:
    side = BookSide(True)
    orders = [make(1, 100), make(2, 101), make(3, 100, 2), make(4, 99)]
    for order in orders:
        side.add(order)
    assert side.best == 101
    assert [o.order_id for o in side.levels[100].orders()] == [1, 3]
    assert side.depth(10) == ((101, 1), (100, 3), (99, 1))
    assert side.depth(2) == ((101, 1), (100, 3))


def test_remove_from_middle_head_and_tail_keeps_links() -> None:
    side = BookSide(False)
    orders = [make(i, 50, is_buy=False) for i in range(1, 6)]
    for order in orders:
        side.add(order)
    side.remove(orders[2])
    side.remove(orders[0])
    side.remove(orders[4])
    level = side.levels[50]
    assert [o.order_id for o in level.orders()] == [2, 4]
    assert level.head is orders[1] and level.tail is orders[3] and level.total == 2
    assert orders[1].prev is None and orders[3].next is None
    side.add(orders[0])
    assert [o.order_id for o in level.orders()] == [2, 4, 1]


def test_best_price_moves_when_levels_empty() -> None:
    side = BookSide(False)
    a, b, c = make(1, 10, is_buy=False), make(2, 12, is_buy=False), make(3, 11, is_buy=False)
    for order in (a, b, c):
        side.add(order)
    assert side.best == 10
    side.remove(a)
    assert side.best == 11 and 10 not in side.levels
    side.remove(c)
    side.remove(b)
    assert side.best is None and not side.levels and len(side.prices) == 0
    assert side.total_at(12) == 0


def test_crossed_by_and_touched() -> None:
    asks = BookSide(False)
    asks.add(make(1, 10, is_buy=False))
    assert asks.crossed_by(10) and asks.crossed_by(11) and not asks.crossed_by(9)
    bids = BookSide(True)
    assert not bids.crossed_by(1)
    bids.add(make(2, 8))
    assert bids.crossed_by(8) and not bids.crossed_by(9)
    assert asks.take_touched() == [10] and bids.take_touched() == [8]
    assert asks.take_touched() == []


def test_touched_levels_fold_into_prices_in_first_touched_order() -> None:
    side = BookSide(True)
    count = TOUCHED_FOLD_AT + 10
    orders = [make(i + 1, 1_000 + i) for i in range(count)]
    for order in orders:
        side.add(order)
    # the list folded once: it stays bounded although nobody took the changes
    assert len(side.touched) < TOUCHED_FOLD_AT and side.folded
    side.remove(orders[0])  # touched again after the fold: reported once, at its first place
    side.add(make(count + 1, 999))
    expected = [1_000 + i for i in range(count)] + [999]
    assert side.take_touched() == expected
    assert side.take_touched() == [] and not side.folded
    side.remove(orders[1])
    assert side.take_touched() == [1_001]

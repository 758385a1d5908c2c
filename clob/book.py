"""One side of an order book: price levels, each a FIFO queue of resting orders.

A level is an intrusive doubly linked list (each order holds ``prev``/``next``)
so that appending, taking the oldest order and cancelling any order by id are
all O(1); each resting order also points at its level, so a cancel needs no
price lookup. Level prices are kept in a ``SortedList`` for the O(log levels)
insert/remove when a level appears or disappears, and the best price is cached
so reading it costs one attribute load.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from sortedcontainers import SortedList

# Touched levels kept as objects before they are folded into a price set (see
# BookSide.touch): bounds the list when nobody takes the changes (replay, bench).
TOUCHED_FOLD_AT: Final = 4096


class Order:
    """A live resting order (mutable; prices in ticks, quantities in lots)."""

    __slots__ = (
        "client_order_id",
        "filled",
        "is_buy",
        "level",
        "next",
        "order_id",
        "post_only",
        "prev",
        "price",
        "qty",
        "stp",
        "user",
    )

    def __init__(
        self,
        order_id: int,
        user: str,
        client_order_id: str | None,
        is_buy: bool,
        price: int,
        qty: int,
        filled: int,
        stp: str,
        post_only: bool,
    ) -> None:
        self.order_id = order_id
        self.user = user
        self.client_order_id = client_order_id
        self.is_buy = is_buy
        self.price = price
        self.qty = qty  # remaining quantity
        self.filled = filled
        self.stp = stp
        self.post_only = post_only
        self.prev: Order | None = None
        self.next: Order | None = None
        self.level: Level | None = None  # set while the order rests


class Level:
    """All resting orders at one price, oldest first, and their total quantity.

    ``touched``: already listed in its side's touched levels (see BookSide).
    """

    __slots__ = ("head", "price", "tail", "total", "touched")

    def __init__(self, price: int) -> None:
        self.price = price
        self.head: Order | None = None
        self.tail: Order | None = None
        self.total = 0
        self.touched = False

    def orders(self) -> Iterator[Order]:
        """The level's orders in time priority."""
        order = self.head
        while order is not None:
            yield order
            order = order.next


class BookSide:
    """Bids (``is_buy``) or asks: levels by price and the cached best price.

    Levels whose aggregated quantity changed since the engine last reported
    level changes: ``touched`` lists each such level once (its flag says it is
    listed, so marking one costs an attribute test, not a dict insert), and
    ``folded`` holds, as an ordered set, the prices of levels listed earlier
    and folded away to keep the list bounded. :meth:`take_touched` reports
    the prices in first-touched order.
    """

    __slots__ = ("best", "folded", "is_buy", "levels", "prices", "touched")

    def __init__(self, is_buy: bool) -> None:
        self.is_buy = is_buy
        self.levels: dict[int, Level] = {}
        self.prices = SortedList()
        self.best: int | None = None
        self.touched: list[Level] = []
        self.folded: dict[int, None] = {}

    def touch(self, level: Level) -> None:
        """List a level not yet listed (callers test ``level.touched`` first)."""
        level.touched = True
        touched = self.touched
        touched.append(level)
        if len(touched) >= TOUCHED_FOLD_AT:
            folded = self.folded
            for old in touched:
                folded[old.price] = None
                old.touched = False
            touched.clear()

    def take_touched(self) -> list[int]:
        """Prices of the levels touched since the last call, first-touched order; resets."""
        touched = self.touched
        if len(touched) == 1 and not self.folded:  # the usual case: one command, one level
            level = touched[0]
            level.touched = False
            touched.clear()
            return [level.price]
        prices = self.folded
        for level in touched:
            prices[level.price] = None
            level.touched = False
        touched.clear()
        self.folded = {}
        return list(prices)

    def add(self, order: Order) -> None:
        """Append ``order`` at the back of the queue at its price."""
        price = order.price
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = Level(price)
            self.prices.add(price)
            best = self.best
            if best is None or (price > best if self.is_buy else price < best):
                self.best = price
            level.head = level.tail = order
            order.prev = None
        else:
            tail = level.tail
            assert tail is not None
            tail.next = order
            order.prev = tail
            level.tail = order
        order.next = None
        order.level = level
        level.total += order.qty
        if not level.touched:
            self.touch(level)

    def remove(self, order: Order) -> None:
        """Take ``order`` out of its level (removing the level when it empties)."""
        level = order.level
        assert level is not None, "the order is not resting"
        prev, nxt = order.prev, order.next
        if prev is None:
            level.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            level.tail = prev
        else:
            nxt.prev = prev
        order.prev = order.next = None
        order.level = None
        level.total -= order.qty
        if not level.touched:
            self.touch(level)
        if level.head is None:
            self.drop_level(level.price)

    def drop_level(self, price: int) -> None:
        """Forget the (empty) level at ``price`` and refresh the best price."""
        del self.levels[price]
        self.prices.remove(price)
        if self.best == price:
            prices = self.prices
            self.best = (prices[-1] if self.is_buy else prices[0]) if prices else None

    def crossed_by(self, price: int) -> bool:
        """Whether an opposite order at ``price`` reaches this side's best price."""
        best = self.best
        if best is None:
            return False
        return price <= best if self.is_buy else price >= best

    def prices_best_first(self) -> Iterator[int]:
        """Level prices in priority order (best first)."""
        return reversed(self.prices) if self.is_buy else iter(self.prices)

    def depth(self, limit: int) -> tuple[tuple[int, int], ...]:
        """Up to ``limit`` aggregated levels ``(price, total)``, best first."""
        rows: list[tuple[int, int]] = []
        levels = self.levels
        for price in self.prices_best_first():
            if len(rows) >= limit:
                break
            rows.append((price, levels[price].total))
        return tuple(rows)

    def total_at(self, price: int) -> int:
        """Aggregated quantity at ``price`` (0 when there is no level)."""
        level = self.levels.get(price)
        return 0 if level is None else level.total

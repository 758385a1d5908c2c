"""One market: its book, its indexes, and price-time matching.

Every method that can refuse a command raises :class:`~clob.events.Reject`
before it changes anything, so a rejected command leaves no trace. Events are
appended to the caller's ``out`` list in the order they happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from clob.book import BookSide, Level, Order
from clob.decimals import MAX_STEPS, Step
from clob.events import (
    DUPLICATE_CLIENT_ORDER_ID,
    INVALID_QTY,
    UNKNOWN_ORDER,
    WOULD_TAKE,
    Accepted,
    Amended,
    Cancelled,
    Event,
    Fill,
    OrderRow,
    Reject,
)

CANCEL_TAKER: Final = "cancel_taker"
CANCEL_MAKER: Final = "cancel_maker"
CANCEL_BOTH: Final = "cancel_both"
GTC: Final = "gtc"
IOC: Final = "ioc"
FOK: Final = "fok"
BUY: Final = "buy"
SELL: Final = "sell"


NO_LIVE_ORDER: Final = "no such live order of this user in this market"

# One trade as the fill history keeps it: (seq, trade_id, price, qty,
# taker_order_id, maker_order_id, taker_user, maker_user, taker_side,
# taker_client_order_id, maker_client_order_id). A plain tuple of plain values,
# because the history grows without bound: the cyclic garbage collector stops
# tracking such a tuple after its first pass, while a Fill instance stays
# tracked and every full collection would walk all of them (about 0.5 s per
# million on this machine, longer than an election timeout). Typed as a
# variable-length tuple on purpose: mypyc keeps a fixed-length tuple type
# unboxed and would box a separate copy into each of the two histories.
FillRow = tuple[Any, ...]

# Returned by Market.match when self-trade prevention cancelled the taker.
TAKER_CANCELLED: Final = -1


class Market:
    """Book, order indexes and fill history of one market.

    ``user_live`` maps user to one dict holding each of that user's live
    orders twice: under its order id (an int) and under its client order id
    (a str, when it has one); ints and strs never compare equal, so one dict
    serves both lookups and a lookup by id also checks the owner. Int keys are
    in order-id order (an order rests during the command that accepted it).
    ``live`` counts live orders; ``user_fills`` maps user to the user's fills
    in this market as :data:`FillRow` tuples, oldest first (the engine merges them across markets by
    ``seq`` for a query without a market).
    """

    __slots__ = (
        "asks",
        "bids",
        "live",
        "lot",
        "name",
        "next_order_id",
        "next_trade_id",
        "tick",
        "user_fills",
        "user_live",
    )

    def __init__(self, name: str, tick: Step, lot: Step) -> None:
        self.name = name
        self.tick = tick
        self.lot = lot
        self.bids = BookSide(True)
        self.asks = BookSide(False)
        self.live = 0
        self.user_live: dict[str, dict[int | str, Order]] = {}
        self.user_fills: dict[str, list[FillRow]] = {}
        self.next_order_id = 1
        self.next_trade_id = 1

    # ----------------------------------------------------------------- lookup

    def find(self, user: str, order_id: int | None, client_order_id: str | None) -> Order:
        """The user's live order by id or client order id, else ``unknown_order``."""
        key: int | str | None = order_id if order_id is not None else client_order_id
        mine = self.user_live.get(user)
        if mine is not None and key is not None:
            found = mine.get(key)
            if found is not None:
                return found
        raise Reject(UNKNOWN_ORDER, NO_LIVE_ORDER)

    def orders_of(self, user: str) -> list[Order]:
        """The user's live orders here, by order id."""
        mine = self.user_live.get(user)
        if mine is None:
            return []
        return sorted((o for k, o in mine.items() if type(k) is int), key=_order_id)

    def all_orders(self) -> list[Order]:
        """Every live order here, by order id (for tools and tests; not fast)."""
        found = [o for mine in self.user_live.values() for k, o in mine.items() if type(k) is int]
        return sorted(found, key=_order_id)

    # ------------------------------------------------------------- new order

    def new_order(
        self,
        seq: int,
        user: str,
        client_order_id: str | None,
        is_buy: bool,
        price: int | None,
        qty: int,
        tif: str,
        post_only: bool,
        stp: str,
        out: list[Event],
    ) -> None:
        """Accept and match a validated order (``price`` None: market order).

        Hot path: the resting insert (``BookSide.add`` + ``index_order``) is inlined.
        """
        user_live = self.user_live
        mine = user_live.get(user)
        if client_order_id is not None and mine is not None and client_order_id in mine:
            raise Reject(DUPLICATE_CLIENT_ORDER_ID, "client_order_id is in use by a live order")
        if is_buy:
            best = self.asks.best
            crosses = price is None or (best is not None and price >= best)
        else:
            best = self.bids.best
            crosses = price is None or (best is not None and price <= best)
        if post_only and crosses:
            raise Reject(WOULD_TAKE, "post-only order would take liquidity")
        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        name = self.name
        out.append(
            Accepted(
                seq,
                name,
                order_id,
                user,
                client_order_id,
                BUY if is_buy else SELL,
                "market" if price is None else "limit",
                price,
                qty,
                tif,
                post_only,
            )
        )
        remaining = qty
        if crosses:
            if tif == FOK and not self.fok_fillable(is_buy, price, qty, user, stp):
                out.append(Cancelled(seq, name, order_id, user, qty, "fok"))
                return
            remaining = self.match(
                seq, order_id, user, client_order_id, is_buy, price, qty, stp, out
            )
            if remaining <= 0:  # filled, or cancelled by self-trade prevention
                return
            mine = user_live.get(user)  # self-trade prevention may have dropped it
        if tif != GTC:
            out.append(
                Cancelled(seq, name, order_id, user, remaining, "ioc" if tif == IOC else "fok")
            )
            return
        assert price is not None
        order = Order(
            order_id,
            user,
            client_order_id,
            is_buy,
            price,
            remaining,
            qty - remaining,
            stp,
            post_only,
        )
        # inline BookSide.add + index_order
        side = self.bids if is_buy else self.asks
        level = side.levels.get(price)
        if level is None:
            order.prev = None
            side.add(order)
        else:
            tail = level.tail
            assert tail is not None
            tail.next = order
            order.prev = tail
            level.tail = order
            order.level = level
            level.total += remaining
            if not level.touched:
                side.touch(level)
        self.live += 1
        if mine is None:
            if client_order_id is None:
                user_live[user] = {order_id: order}
            else:
                user_live[user] = {order_id: order, client_order_id: order}
        else:
            mine[order_id] = order
            if client_order_id is not None:
                mine[client_order_id] = order

    def fok_fillable(self, is_buy: bool, limit: int | None, qty: int, user: str, stp: str) -> bool:
        """Whether matching would fill ``qty`` entirely (the FOK pre-walk).

        Walks the opposite side's levels in priority order as matching would. An
        order of the same user ends the walk, except under ``cancel_maker`` where it
        is skipped (matching would cancel it and carry on). A level without an order
        of this user counts by its total: an order-by-order walk made a FOK that
        cannot fill cost every replica time in proportion to the resting orders
        (2.7 ms against 100,000 orders at one price, 1,000 times a normal command).
        """
        opposite = self.asks if is_buy else self.bids
        levels = opposite.levels
        # this user's resting quantity on the opposite side, by price
        own: dict[int, int] = {}
        mine = self.user_live.get(user)
        if mine is not None:
            for key, resting in mine.items():
                if type(key) is int and resting.is_buy != is_buy:
                    own[resting.price] = own.get(resting.price, 0) + resting.qty
        need = qty
        for price in opposite.prices_best_first():
            if limit is not None and (price > limit if is_buy else price < limit):
                return False
            level = levels[price]
            mine_here = own.get(price)
            if mine_here is None:
                need -= level.total
            elif stp == CANCEL_MAKER:
                need -= level.total - mine_here
            else:  # the walk ends at this user's first order in the level
                order = level.head
                while order is not None and order.user != user:
                    need -= order.qty
                    if need <= 0:
                        return True
                    order = order.next
                return False
            if need <= 0:
                return True
        return False

    def match(
        self,
        seq: int,
        taker_id: int,
        user: str,
        client_order_id: str | None,
        is_buy: bool,
        limit: int | None,
        qty: int,
        stp: str,
        out: list[Event],
    ) -> int:
        """Trade a taker against the opposite side; return its remaining quantity.

        Returns :data:`TAKER_CANCELLED` when self-trade prevention cancelled the
        taker (its ``cancelled`` event is already in ``out``).
        """
        opposite = self.asks if is_buy else self.bids
        levels = opposite.levels
        name = self.name
        taker_side = BUY if is_buy else SELL
        user_fills = self.user_fills
        remaining = qty
        while remaining:
            best = opposite.best
            if best is None or (limit is not None and (best > limit if is_buy else best < limit)):
                break
            level = levels[best]
            if not level.touched:
                opposite.touch(level)
            maker = level.head
            while maker is not None:
                nxt = maker.next
                if maker.user == user:
                    if stp != CANCEL_TAKER:
                        level.total -= maker.qty
                        self._unlink_head(level, maker, nxt)
                        out.append(
                            Cancelled(seq, name, maker.order_id, maker.user, maker.qty, "stp")
                        )
                    if stp != CANCEL_MAKER:
                        if level.head is None:
                            opposite.drop_level(best)
                        out.append(Cancelled(seq, name, taker_id, user, remaining, "stp"))
                        return TAKER_CANCELLED
                    maker = nxt
                    continue
                maker_qty = maker.qty
                traded = remaining if remaining < maker_qty else maker_qty
                trade_id = self.next_trade_id
                self.next_trade_id = trade_id + 1
                maker_user = maker.user
                fill: Fill = Fill(
                    seq,
                    name,
                    trade_id,
                    best,
                    traded,
                    taker_id,
                    maker.order_id,
                    user,
                    maker_user,
                    taker_side,
                    client_order_id,
                    maker.client_order_id,
                )
                out.append(fill)
                row: FillRow = (
                    seq,
                    trade_id,
                    best,
                    traded,
                    taker_id,
                    maker.order_id,
                    user,
                    maker_user,
                    taker_side,
                    client_order_id,
                    maker.client_order_id,
                )
                history = user_fills.get(user)
                if history is None:
                    user_fills[user] = [row]
                else:
                    history.append(row)
                history = user_fills.get(maker_user)
                if history is None:
                    user_fills[maker_user] = [row]
                else:
                    history.append(row)
                level.total -= traded
                remaining -= traded
                if traded == maker_qty:
                    maker.qty = 0
                    maker.filled += traded
                    self._unlink_head(level, maker, nxt)
                    maker = nxt
                else:
                    maker.qty = maker_qty - traded
                    maker.filled += traded
                    break
                if not remaining:
                    break
            if level.head is None:
                opposite.drop_level(best)
        return remaining

    def _unlink_head(self, level: Level, maker: Order, nxt: Order | None) -> None:
        """Remove ``maker``, the head of ``level``, from the level and the indexes.

        The caller has already taken the maker's quantity off ``level.total``.
        """
        level.head = nxt
        if nxt is None:
            level.tail = None
        else:
            nxt.prev = None
        maker.next = None
        maker.level = None
        self.unindex_order(maker)

    # ----------------------------------------------------------------- indexes

    def index_order(self, order: Order) -> None:
        """Register a newly resting order under its id and client order id."""
        self.live += 1
        mine = self.user_live.get(order.user)
        if mine is None:
            mine = self.user_live[order.user] = {}
        mine[order.order_id] = order
        if order.client_order_id is not None:
            mine[order.client_order_id] = order

    def unindex_order(self, order: Order) -> None:
        """Forget an order that is no longer live."""
        self.live -= 1
        user = order.user
        mine = self.user_live[user]
        del mine[order.order_id]
        coid = order.client_order_id
        if coid is not None:
            del mine[coid]
        if not mine:
            del self.user_live[user]

    # ------------------------------------------------------- cancel and amend

    def cancel_order(
        self, seq: int, user: str, order_id: int | None, coid: str | None, out: list[Event]
    ) -> bool:
        """The ``cancel`` command: :meth:`find` then :meth:`cancel`, inlined (hot path).

        False, with nothing changed, when the user has no such live order: a
        cancel that lost the race against a fill is common, so this refusal is
        a return value rather than a (far costlier) :class:`Reject`.
        """
        key: int | str | None = order_id if order_id is not None else coid
        user_live = self.user_live
        mine = user_live.get(user)
        if mine is None or key is None or (order := mine.get(key)) is None:
            return False
        qty = order.qty
        side = self.bids if order.is_buy else self.asks
        level = order.level
        assert level is not None, "a live order rests in a level"
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
        level.total -= qty
        if not level.touched:
            side.touch(level)
        if level.head is None:
            side.drop_level(level.price)
        self.live -= 1
        oid = order.order_id
        del mine[oid]
        coid = order.client_order_id
        if coid is not None:
            del mine[coid]
        if not mine:
            del user_live[user]
        out.append(Cancelled(seq, self.name, oid, user, qty, "user"))
        return True

    def cancel(self, seq: int, order: Order, reason: str, out: list[Event]) -> None:
        """Remove a live order from the book: ``cancelled`` with ``reason``."""
        (self.bids if order.is_buy else self.asks).remove(order)
        self.unindex_order(order)
        fields = (seq, self.name, order.order_id, order.user, order.qty, reason)
        out.append(Cancelled(*fields))

    def cancel_all(self, seq: int, user: str, out: list[Event]) -> None:
        """Cancel every live order of ``user`` here, in order-id order."""
        for order in self.orders_of(user):
            self.cancel(seq, order, "cancel_all", out)

    def amend(
        self, seq: int, order: Order, price: int | None, qty: int | None, out: list[Event]
    ) -> None:
        """Change a live order's price and/or remaining quantity.

        Same price and no larger quantity: the order keeps its queue place.
        A larger quantity or a new price sends it to the back of the queue; a
        new price that reaches the opposite side matches like an incoming
        order with the same id (refused with ``would_take`` when post-only,
        leaving the order as it was).
        """
        # An order's filled plus remaining quantity stays below MAX_STEPS, as a new
        # order's does: amend-and-fill cycles could otherwise grow ``filled`` past
        # the 64 bits a snapshot stores.
        if qty is not None and order.filled + qty >= MAX_STEPS:
            raise Reject(INVALID_QTY, "filled plus remaining quantity would be out of range")
        new_price = order.price if price is None else price
        new_qty = order.qty if qty is None else qty
        side = self.bids if order.is_buy else self.asks
        if new_price == order.price:
            if new_qty <= order.qty:
                level = order.level
                assert level is not None, "a live order rests in a level"
                level.total -= order.qty - new_qty
                order.qty = new_qty
                if not level.touched:
                    side.touch(level)
            else:
                side.remove(order)
                order.qty = new_qty
                side.add(order)
            fields = (seq, self.name, order.order_id, order.user, new_price, new_qty)
            out.append(Amended(*fields))
            return
        opposite = self.asks if order.is_buy else self.bids
        crosses = opposite.crossed_by(new_price)
        if crosses and order.post_only:
            raise Reject(WOULD_TAKE, "post-only order would take liquidity at the new price")
        side.remove(order)
        order.price = new_price
        order.qty = new_qty
        fields = (seq, self.name, order.order_id, order.user, new_price, new_qty)
        out.append(Amended(*fields))
        remaining = new_qty
        if crosses:
            remaining = self.match(
                seq,
                order.order_id,
                order.user,
                order.client_order_id,
                order.is_buy,
                new_price,
                new_qty,
                order.stp,
                out,
            )
            if remaining <= 0:  # filled, or cancelled by self-trade prevention
                self.unindex_order(order)
                return
            order.filled += new_qty - remaining
            order.qty = remaining
        side.add(order)

    # ----------------------------------------------------------------- queries

    def fill_event(self, row: FillRow) -> Fill:
        """The ``Fill`` of a history row (for the ``fills`` query)."""
        seq, trade_id, price, qty, t_id, m_id, t_user, m_user, t_side, t_coid, m_coid = row
        return Fill(
            seq, self.name, trade_id, price, qty, t_id, m_id, t_user, m_user, t_side, t_coid, m_coid
        )

    def fill_events(self, user: str) -> Iterator[Fill]:
        """The user's fills here as ``Fill`` events, oldest first (lazily)."""
        for row in self.user_fills.get(user, ()):
            yield self.fill_event(row)

    def order_rows(self, user: str) -> list[OrderRow]:
        """The user's live orders here, by order id, as query rows."""
        name = self.name
        return [
            OrderRow(
                name,
                o.order_id,
                o.client_order_id,
                BUY if o.is_buy else SELL,
                o.price,
                o.qty,
                o.filled,
                o.post_only,
            )
            for o in self.orders_of(user)
        ]


def _order_id(order: Order) -> int:
    return order.order_id

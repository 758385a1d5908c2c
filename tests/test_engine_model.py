"""Model-based test: the engine against a naive list-scanning model.

Hypothesis drives the engine and ``ModelEngine`` with the same commands (new
orders of every type, cancels and amends by id or client order id, cancel_all,
and the orders / fills / book queries with their optional fields) and compares
every event, field for field. Few users, few prices and small quantities make
queues, partial fills, self-trade prevention and client order id reuse common.
After every step the invariants compare the engine's own book structure with
the model: no crossed book, level totals equal the sum of their orders, every
live order sits exactly once in its level queue and in the indexes, queues are
in the model's time order, and every user's orders and fills queries agree.

The run is derandomized and keeps no example database, so CI sees the same
examples every time; set CLOB_SLOW=1 for the much longer variant and
CLOB_MODEL_SHRINK=1 to have a failure shrunk to a minimal program.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

try:  # tests/ as a package or as a plain directory
    from tests.engine_harness import new_order_command
    from tests.engine_model import ModelEngine, ModelMarket
except ModuleNotFoundError:
    from engine_harness import new_order_command  # type: ignore[import-not-found,no-redef]
    from engine_model import ModelEngine, ModelMarket  # type: ignore[import-not-found,no-redef]

from clob.book import BookSide, Order
from clob.engine import Engine
from clob.market import Market

Row = dict[str, Any]
MARKETS = ("A", "B")
USERS = ("u1", "u2", "u3")
PRICES = st.sampled_from([99, 100, 101, 102])
QTYS = st.integers(min_value=1, max_value=4)
STPS = st.sampled_from(["cancel_taker", "cancel_maker", "cancel_both"])
COIDS = st.sampled_from([None, None, "a", "b"])
PASSIVE_COIDS = st.sampled_from([None, "a", "b", "c", "d", "e"])
SIDES = st.sampled_from(["buy", "sell"])
# Market "A" gets most of the traffic so books there are deep; "Z" does not exist.
MARKET = st.sampled_from(["A", "A", "A", "B"])
SOME_MARKET = st.sampled_from([None, None, "A", "A", "A", "B", "B", "Z"])
PICK = st.integers(min_value=0, max_value=255)
MOSTLY_LIVE = st.sampled_from([True, True, True, False])
RARELY = st.sampled_from([False] * 7 + [True])
# A defect that makes a new order fail a value check (mostly none).
DEFECTS = st.sampled_from(
    [None] * 14 + ["qty0", "price0", "market_price", "unknown_market", "negative_qty"]
)


def new_order(
    market: str, user: str, side: str, qty: int, price: int | None, **optional: object
) -> Row:
    """A new_order command with integer price and qty; optional fields given as None are
    left out."""
    given = {k: v for k, v in optional.items() if v is not None}
    text = None if price is None else str(price)
    return new_order_command(market, user, side, text, str(qty), **given)


def without_messages(rows: list[Row]) -> list[Row]:
    """Rejections minus their human ``message`` (which must be a non-empty string)."""
    out = []
    for row in rows:
        if row["type"] == "rejected":
            row = dict(row)
            message = row.pop("message")
            assert isinstance(message, str) and message, row
        out.append(row)
    return out


class EngineVersusModel(RuleBasedStateMachine):
    """Every command goes to both; their rows must be equal."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine()
        self.model = ModelEngine()
        self.seq = 0
        # (market, order id, user, client order id) of every order ever accepted
        self.known: list[tuple[str, int, str, str | None]] = []
        for name in MARKETS:
            self.step({"type": "create_market", "market": name, "tick_size": "1", "lot_size": "1"})

    def step(self, command: Row) -> list[Row]:
        """Run ``command`` on both and require identical rows."""
        self.seq += 1
        got = without_messages(
            [self.engine.encode(e) for e in self.engine.execute(command, self.seq)]
        )
        want = self.model.execute(command, self.seq)
        assert got == want, f"command {command}"
        for row in got:
            if row["type"] == "accepted":
                self.known.append(
                    (row["market"], row["order_id"], row["user"], row["client_order_id"])
                )
        return got

    def anything_live(self) -> bool:
        return any(market.orders for market in self.model.markets.values())

    def target(self, pick: int, live_only: bool) -> tuple[str, int, str, str | None]:
        """A live order (or any order ever accepted); a made-up id when there is none."""
        if live_only:
            found = [
                (name, o.oid, o.user, o.coid)
                for name in MARKETS
                for o in sorted(self.model.markets[name].orders, key=lambda o: o.oid)
            ]
        else:
            found = self.known
        if not found:
            return "A", pick % 4 + 1, USERS[pick % len(USERS)], None
        return found[pick % len(found)]

    def naming(self, pick: int, live_only: bool, by_coid: bool, wrong_user: bool) -> Row:
        """The ``market``/``user``/id fields of a cancel or amend of a picked order."""
        market, oid, user, coid = self.target(pick, live_only)
        if wrong_user:
            user = USERS[(USERS.index(user) + 1) % len(USERS)]
        command: Row = {"market": market, "user": user}
        if by_coid and coid is not None:
            command["client_order_id"] = coid
        else:
            command["order_id"] = oid
        return command

    # ----------------------------------------------------------------- rules

    @rule(
        market=MARKET,
        user=st.sampled_from(USERS),
        side=SIDES,
        is_market=RARELY,
        price=PRICES,
        qty=QTYS,
        tif=st.sampled_from([None, None, None, "gtc", "ioc", "fok"]),
        post_only=st.sampled_from([False, False, False, True]),
        stp=STPS,
        coid=COIDS,
        defect=DEFECTS,
    )
    def new_order(
        self,
        market: str,
        user: str,
        side: str,
        is_market: bool,
        price: int,
        qty: int,
        tif: str | None,
        post_only: bool,
        stp: str,
        coid: str | None,
        defect: str | None,
    ) -> None:
        """Any new order; ``defect`` sometimes makes it fail a value check."""
        command: Row = {
            "type": "new_order",
            "market": "Z" if defect == "unknown_market" else market,
            "user": user,
            "side": side,
            "order_type": "market" if is_market else "limit",
            "qty": {"qty0": "0", "negative_qty": "-1"}.get(defect or "", str(qty)),
            "stp": stp,
        }
        if not is_market or defect == "market_price":
            command["price"] = "0" if defect == "price0" else str(price)
        if tif is not None:
            command["tif"] = tif
        if post_only:
            command["post_only"] = True
        if coid is not None:
            command["client_order_id"] = coid
        self.step(command)

    @initialize(
        orders=st.lists(
            st.tuples(
                MARKET, st.sampled_from(USERS), SIDES, st.integers(0, 1), QTYS, STPS, PASSIVE_COIDS
            ),
            min_size=2,
            max_size=10,
        )
    )
    def opening_book(self, orders: list[tuple[str, str, str, int, int, str, str | None]]) -> None:
        """Start from a few resting orders so that most steps meet a non-empty book."""
        for market, user, side, away, qty, stp, coid in orders:
            self.passive_order(market, user, side, away, qty, False, stp, coid)

    @rule(
        market=MARKET,
        user=st.sampled_from(USERS),
        side=SIDES,
        away=st.integers(min_value=0, max_value=1),
        qty=QTYS,
        post_only=st.sampled_from([False, False, True]),
        stp=STPS,
        coid=PASSIVE_COIDS,
    )
    def passive_order(
        self,
        market: str,
        user: str,
        side: str,
        away: int,
        qty: int,
        post_only: bool,
        stp: str,
        coid: str | None,
    ) -> None:
        """A gtc limit order on its own side of 100/101: builds queues."""
        price = 100 - away if side == "buy" else 101 + away
        self.step(
            new_order(
                market, user, side, qty, price, post_only=post_only, stp=stp, client_order_id=coid
            )
        )

    @rule(
        user=st.sampled_from(USERS),
        side=SIDES,
        price=st.none() | PRICES,
        qty=st.integers(min_value=2, max_value=8),
        tif=st.sampled_from([None, None, "ioc", "fok", "fok"]),
        stp=STPS,
    )
    def sweep(
        self, user: str, side: str, price: int | None, qty: int, tif: str | None, stp: str
    ) -> None:
        """A larger order in market A (limit, or market when ``price`` is None) that
        walks several makers and levels; FOK ones test the fill check."""
        self.step(new_order("A", user, side, qty, price, stp=stp, tif=tif))

    @precondition(lambda self: self.anything_live())
    @rule(
        pick=PICK,
        deeper=st.integers(min_value=0, max_value=1),
        qty=st.none() | st.integers(min_value=1, max_value=6),
        margin=st.integers(min_value=-1, max_value=1),
        tif=st.sampled_from([None, "ioc", "fok", "fok"]),
        stp=STPS,
    )
    def self_cross(
        self, pick: int, deeper: int, qty: int | None, margin: int, tif: str | None, stp: str
    ) -> None:
        """An order that reaches one of its own user's resting orders (and maybe
        other users' orders around it): self-trade prevention and the FOK walk.
        With ``qty`` None it asks for the other users' reachable quantity plus
        ``margin``: the edge of what a FOK can fill."""
        market, oid, user, _ = self.target(pick, True)
        model = self.model.markets[market]
        order = model.live(user, oid, None)
        assert order is not None
        side = "sell" if order.side == "buy" else "buy"
        price = order.price + deeper if side == "buy" else order.price - deeper
        if qty is None:
            others = sum(o.qty for o in model.makers_for(side, price) if o.user != user)
            qty = max(1, others + margin)
        self.step(new_order(market, user, side, qty, price, stp=stp, tif=tif))

    @rule(
        market=MARKET,
        user=st.sampled_from(USERS),
        side=SIDES,
        gap=st.integers(min_value=0, max_value=1),
        qty=QTYS,
        coid=PASSIVE_COIDS,
    )
    def post_only_at_touch(
        self, market: str, user: str, side: str, gap: int, qty: int, coid: str | None
    ) -> None:
        """A post-only order at the best opposite price (``would_take``, whoever
        rests there) or one tick short of it (rests)."""
        best = self.model.markets[market].best("sell" if side == "buy" else "buy")
        if best is None:
            best = 101 if side == "buy" else 100
        price = best - gap if side == "buy" else best + gap
        self.step(new_order(market, user, side, qty, price, post_only=True, client_order_id=coid))

    @precondition(lambda self: self.anything_live())
    @rule(pick=PICK, live_only=MOSTLY_LIVE, by_coid=st.booleans(), wrong_user=RARELY)
    def cancel(self, pick: int, live_only: bool, by_coid: bool, wrong_user: bool) -> None:
        command = self.naming(pick, live_only, by_coid, wrong_user)
        self.step({"type": "cancel", **command})

    @precondition(lambda self: self.anything_live())
    @rule(
        pick=PICK,
        live_only=MOSTLY_LIVE,
        by_coid=st.booleans(),
        wrong_user=RARELY,
        price_how=st.sampled_from(["keep", "same"]),
        qty_how=st.sampled_from(["same", "down", "down", "up", "set"]),
        new_qty=st.integers(min_value=0, max_value=4),
    )
    def amend_qty(
        self,
        pick: int,
        live_only: bool,
        by_coid: bool,
        wrong_user: bool,
        price_how: str,
        qty_how: str,
        new_qty: int,
    ) -> None:
        """Amend the quantity (at the same price): priority kept only when not larger."""
        naming = self.naming(pick, live_only, by_coid, wrong_user)
        self.amend(naming, price_how, 0, qty_how, new_qty)

    @precondition(lambda self: self.anything_live())
    @rule(
        pick=PICK,
        live_only=MOSTLY_LIVE,
        by_coid=st.booleans(),
        wrong_user=RARELY,
        new_price=PRICES,
        qty_how=st.sampled_from(["keep", "keep", "same", "down", "up", "set"]),
        new_qty=st.integers(min_value=0, max_value=4),
    )
    def amend_price(
        self,
        pick: int,
        live_only: bool,
        by_coid: bool,
        wrong_user: bool,
        new_price: int,
        qty_how: str,
        new_qty: int,
    ) -> None:
        """Amend the price (and maybe the quantity): back of the queue, or a match."""
        naming = self.naming(pick, live_only, by_coid, wrong_user)
        self.amend(naming, "new", new_price, qty_how, new_qty)

    @precondition(lambda self: self.anything_live())
    @rule(
        pick=PICK,
        by_coid=st.booleans(),
        deeper=st.integers(min_value=0, max_value=1),
        qty_how=st.sampled_from(["keep", "up", "set"]),
        new_qty=st.integers(min_value=1, max_value=6),
    )
    def amend_through(
        self, pick: int, by_coid: bool, deeper: int, qty_how: str, new_qty: int
    ) -> None:
        """Re-price a live order to the best opposite price (or one tick beyond):
        the amend matches, partially or fully, or meets its own user."""
        naming = self.naming(pick, True, by_coid, False)
        market = self.model.markets[naming["market"]]
        order = market.live(naming["user"], naming.get("order_id"), naming.get("client_order_id"))
        assert order is not None
        best = market.best("sell" if order.side == "buy" else "buy")
        if best is None:
            best = order.price + (1 if order.side == "buy" else -1)
        price = best + deeper if order.side == "buy" else best - deeper
        self.amend(naming, "new", price, qty_how, new_qty)

    def amend(
        self, naming: Row, price_how: str, new_price: int, qty_how: str, new_qty: int
    ) -> None:
        """Send an amend; "same"/"down"/"up" are relative to the live order named."""
        command: Row = {"type": "amend", **naming}
        order = self.model.markets[naming["market"]].live(
            naming["user"], naming.get("order_id"), naming.get("client_order_id")
        )
        price, qty = (new_price, new_qty) if order is None else (order.price, order.qty)
        if price_how == "same":
            command["price"] = str(price)
        elif price_how == "new":
            command["price"] = str(new_price)
        if qty_how == "same":
            command["qty"] = str(qty)
        elif qty_how == "down":
            command["qty"] = str(max(1, qty - 1))
        elif qty_how == "up":
            command["qty"] = str(qty + 1)
        elif qty_how == "set":
            command["qty"] = str(new_qty)
        self.step(command)

    @rule(
        kind=st.sampled_from(["fills", "fills", "fills", "book", "book", "orders", "cancel_all"]),
        user=st.sampled_from(USERS),
        market=SOME_MARKET,
        after=st.none() | st.integers(min_value=0, max_value=12),
        limit=st.sampled_from([None, 1, 1, 2, 3, 1000, 0, 1001]),
        depth=st.sampled_from([None, 1, 1, 2, 3, 0]),
    )
    def query_or_cancel_all(
        self,
        kind: str,
        user: str,
        market: str | None,
        after: int | None,
        limit: int | None,
        depth: int | None,
    ) -> None:
        """A query with its optional fields, or (rarely) a cancel_all."""
        command: Row = {"type": kind}
        if kind == "book":
            command["market"] = market or "A"
            if depth is not None:
                command["depth"] = depth
            self.step(command)
            return
        command["user"] = user
        if market is not None:
            command["market"] = market
        if kind == "fills":
            # `after` without `market` is bad_command: sent only now and then
            if after is not None and (market is not None or after == 0):
                command["after"] = after
            if limit is not None:
                command["limit"] = limit
        self.step(command)

    @rule(user=st.sampled_from(USERS), market=MARKET, limit=st.integers(1, 3))
    def fills_pages(self, user: str, market: str, limit: int) -> None:
        """Page through a user's fills with ``next``; the pages add up to the history."""
        command: Row = {"type": "fills", "user": user, "market": market, "limit": limit}
        seen: list[Row] = []
        while True:
            (page,) = self.step(command)
            seen += page["fills"]
            if page["next"] is None:
                break
            assert page["fills"], "a page with a cursor is not empty"
            command["after"] = page["next"]
        (whole,) = self.step({"type": "fills", "user": user, "market": market, "limit": 1000})
        assert seen == whole["fills"]

    # ------------------------------------------------------------ invariants

    @invariant()
    def books_equal_model(self) -> None:
        """Book structure and indexes of every market are sound and equal the model's."""
        for name in MARKETS:
            market = self.engine.markets[name]
            model = self.model.markets[name]
            bid, ask = market.bids.best, market.asks.best
            assert bid is None or ask is None or bid < ask, f"{name} crossed"
            resting = check_side(market.bids, model, "buy") + check_side(market.asks, model, "sell")
            check_indexes(market, resting)

    @invariant()
    def queries_equal_model(self) -> None:
        """Each user's orders and fills (all markets, default and small limit) and
        each market's book (default and smallest depth) agree."""
        queries: list[Row] = []
        for user in USERS:
            queries.append({"type": "orders", "user": user})
            queries.append({"type": "fills", "user": user})
            queries.append({"type": "fills", "user": user, "limit": 2})
        for name in MARKETS:
            queries.append({"type": "book", "market": name})
            queries.append({"type": "book", "market": name, "depth": 1})
        for query in queries:
            rows = [self.engine.encode(e) for e in self.engine.execute(query, self.seq)]
            assert rows == self.model.execute(query, self.seq), query


def check_side(side: BookSide, model: ModelMarket, name: str) -> list[Order]:
    """One side's levels are consistent and queue for queue equal to the model."""
    queues = []
    resting: list[Order] = []
    for price in side.prices_best_first():
        level = side.levels[price]
        orders = list(level.orders())
        backwards = []
        order = level.tail
        while order is not None:
            backwards.append(order)
            order = order.prev
        assert orders and backwards[::-1] == orders, f"{name} {price}: broken links"
        assert level.total == sum(o.qty for o in orders), f"{name} {price}: level total"
        assert all(o.price == price and o.qty > 0 and o.is_buy == (name == "buy") for o in orders)
        queues.append((price, [o.order_id for o in orders]))
        resting += orders
    assert sorted(side.levels) == sorted(side.prices)
    assert side.best == (queues[0][0] if queues else None)
    assert queues == model.queues(name), f"{name} queues"
    return resting


def check_indexes(market: Market, resting: list[Order]) -> None:
    """Every resting order appears once, under its id and client order id, and nothing else."""
    ids = sorted(o.order_id for o in resting)
    assert len(set(ids)) == len(ids) == market.live
    indexed: list[int] = []
    for user, mine in market.user_live.items():
        assert mine, "empty per-user index"
        for key, order in mine.items():
            assert order.user == user
            if type(key) is int:
                assert order.order_id == key
                indexed.append(key)
            else:
                assert order.client_order_id == key and mine[order.order_id] is order
    assert sorted(indexed) == ids
    assert all(any(o is r for r in resting) for o in market.all_orders())


# Shrinking a failure re-runs whole programs with every invariant thousands of
# times (up to hypothesis' 5-minute cap), so by default a failure is reported
# as found: the full program, at most about 60 steps, with the failing command
# and the diff of its events. CLOB_MODEL_SHRINK=1 asks for a minimal program.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
if os.environ.get("CLOB_MODEL_SHRINK") == "1":
    PHASES.append(Phase.shrink)

COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "phases": PHASES,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}


def test_engine_equals_model() -> None:
    run_state_machine_as_test(
        EngineVersusModel, settings=settings(max_examples=300, stateful_step_count=50, **COMMON)
    )


@pytest.mark.slow
def test_engine_equals_model_long() -> None:
    run_state_machine_as_test(
        EngineVersusModel, settings=settings(max_examples=2000, stateful_step_count=100, **COMMON)
    )

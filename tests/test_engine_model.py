"""Model-based test: the engine against a naive list-scanning model.

Hypothesis drives both with the same commands and compares every event;
invariants check that the book is never crossed and that the aggregated book
equals the model's.
"""

from __future__ import annotations

from typing import Any

import pytest

try:  # tests/ as plain directory or as a package
    from engine_model import MARKET, ModelMarket
except ModuleNotFoundError:
    from tests.engine_model import MARKET, ModelMarket
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
)

from clob.engine import Engine

USERS = st.sampled_from(["u1", "u2", "u3"])
PRICES = st.integers(min_value=98, max_value=102)
QTYS = st.integers(min_value=1, max_value=4)
STPS = st.sampled_from(["cancel_taker", "cancel_maker", "cancel_both"])
COIDS = st.none() | st.sampled_from(["a", "b", "c"])


def simplify(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reduce rejections to type and reason (the model has no messages)."""
    return [
        {"type": "rejected", "reason": r["reason"]} if r["type"] == "rejected" else r for r in rows
    ]


class EngineVersusModel(RuleBasedStateMachine):
    order_refs = Bundle("order_refs")

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine()
        self.model = ModelMarket()
        self.seq = 1
        self.engine.execute(
            {"type": "create_market", "market": MARKET, "tick_size": "1", "lot_size": "1"}, 1
        )

    def run(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        self.seq += 1
        return simplify([self.engine.encode(e) for e in self.engine.execute(command, self.seq)])

    @rule(
        target=order_refs,
        user=USERS,
        side=st.sampled_from(["buy", "sell"]),
        price=st.none() | PRICES,
        qty=QTYS,
        tif=st.sampled_from([None, None, "gtc", "ioc", "fok"]),
        post_only=st.sampled_from([False, False, False, True]),
        stp=STPS,
        coid=COIDS,
    )
    def new_order(
        self,
        user: str,
        side: str,
        price: int | None,
        qty: int,
        tif: str | None,
        post_only: bool,
        stp: str,
        coid: str | None,
    ) -> Any:
        command: dict[str, Any] = {
            "type": "new_order",
            "market": MARKET,
            "user": user,
            "side": side,
            "order_type": "market" if price is None else "limit",
            "qty": str(qty),
            "post_only": post_only,
            "stp": stp,
        }
        if price is not None:
            command["price"] = str(price)
        if tif is not None:
            command["tif"] = tif
        if coid is not None:
            command["client_order_id"] = coid
        got = self.run(command)
        want = self.model.new_order(self.seq, user, coid, side, price, qty, tif, post_only, stp)
        assert got == want
        if got[0]["type"] == "accepted":
            return (user, got[0]["order_id"])
        return multiple()

    @rule(ref=consumes(order_refs), by_coid=st.booleans())
    def cancel(self, ref: tuple[str, int], by_coid: bool) -> None:
        user, oid = ref
        order = self.model.live(user, oid, None)
        command: dict[str, Any]
        if by_coid and order is not None and order.coid is not None:
            command = {
                "type": "cancel",
                "market": MARKET,
                "user": user,
                "client_order_id": order.coid,
            }
            want = self.model.cancel(self.seq + 1, user, None, order.coid)
        else:
            command = {"type": "cancel", "market": MARKET, "user": user, "order_id": oid}
            want = self.model.cancel(self.seq + 1, user, oid, None)
        assert self.run(command) == want

    @rule(ref=order_refs, other=USERS)
    def cancel_other_users_order(self, ref: tuple[str, int], other: str) -> None:
        user, oid = ref
        if other == user:
            return
        command = {"type": "cancel", "market": MARKET, "user": other, "order_id": oid}
        assert self.run(command) == [{"type": "rejected", "reason": "unknown_order"}]

    @rule(ref=order_refs, price=st.none() | PRICES, qty=st.none() | QTYS)
    def amend(self, ref: tuple[str, int], price: int | None, qty: int | None) -> None:
        if price is None and qty is None:
            return
        user, oid = ref
        command: dict[str, Any] = {"type": "amend", "market": MARKET, "user": user, "order_id": oid}
        if price is not None:
            command["price"] = str(price)
        if qty is not None:
            command["qty"] = str(qty)
        want = self.model.amend(self.seq + 1, user, oid, price, qty)
        assert self.run(command) == want

    @rule(user=USERS)
    def cancel_all(self, user: str) -> None:
        want = self.model.cancel_all(self.seq + 1, user)
        assert self.run({"type": "cancel_all", "user": user}) == want

    @rule(
        target=order_refs,
        user=USERS,
        side=st.sampled_from(["buy", "sell"]),
        price=PRICES,
        qty=QTYS,
        stp=STPS,
    )
    def limit_order(self, user: str, side: str, price: int, qty: int, stp: str) -> Any:
        return self.new_order(user, side, price, qty, None, False, stp, None)

    @invariant()
    def fills_query_equals_model(self) -> None:
        for user in ("u1", "u2", "u3"):
            (event,) = self.engine.execute({"type": "fills", "user": user, "limit": 1000}, 0)
            row = self.engine.encode(event)
            mine = [f for f in self.model.fills if user in (f["taker_user"], f["maker_user"])]
            got = [(f["trade_id"], f["qty"], f["price"]) for f in row["fills"]]
            assert got == [(f["trade_id"], f["qty"], f["price"]) for f in mine][:1000]

    @invariant()
    def book_never_crossed(self) -> None:
        market = self.engine.markets[MARKET]
        bid, ask = market.bids.best, market.asks.best
        assert bid is None or ask is None or bid < ask

    @invariant()
    def book_equals_model(self) -> None:
        market = self.engine.markets[MARKET]
        assert (list(market.bids.depth(1000)), list(market.asks.depth(1000))) == self.model.book()

    @invariant()
    def orders_query_equals_model(self) -> None:
        for user in ("u1", "u2", "u3"):
            rows = self.engine.markets[MARKET].order_rows(user)
            mine = sorted((o for o in self.model.orders if o.user == user), key=lambda o: o.oid)
            assert [(r.order_id, r.qty, r.filled_qty, r.price) for r in rows] == [
                (o.oid, o.qty, o.filled, o.price) for o in mine
            ]


EngineVersusModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineVersusModel = EngineVersusModel.TestCase


class LongEngineVersusModel(EngineVersusModel):
    """The same machine with many more examples (run with CLOB_SLOW=1)."""


LongEngineVersusModel.TestCase.settings = settings(
    max_examples=3000,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLongEngineVersusModel = pytest.mark.slow(LongEngineVersusModel.TestCase)

"""Seeded random runs: the engine equals the naive model event for event, and
the invariants of ENGINE.md hold (book never crossed, fills conserve quantity,
no self-trade, replay is deterministic)."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

try:  # tests/ as plain directory or as a package
    from engine_model import MARKET, ModelMarket
except ModuleNotFoundError:
    from tests.engine_model import MARKET, ModelMarket

from clob.engine import Engine

Row = dict[str, Any]
USERS = ("u1", "u2", "u3", "u4")


def random_command(rng: random.Random, model: ModelMarket) -> tuple[Row, Any]:
    """A command and the call that computes the model's expected events."""
    roll = rng.random()
    user = rng.choice(USERS)
    live = model.orders
    if roll < 0.6 or not live:
        side = rng.choice(("buy", "sell"))
        is_market = rng.random() < 0.08
        price = None if is_market else rng.randint(95, 105)
        qty = rng.randint(1, 8)
        tif = rng.choice((None, None, None, "gtc", "ioc", "fok"))
        if is_market and tif == "gtc":
            tif = None
        post_only = rng.random() < 0.1 and not is_market and tif in (None, "gtc")
        stp = rng.choice(("cancel_taker", "cancel_maker", "cancel_both"))
        coid = rng.choice((None, None, "a", "b", "c"))
        command: Row = {
            "type": "new_order",
            "market": MARKET,
            "user": user,
            "side": side,
            "order_type": "market" if is_market else "limit",
            "qty": str(qty),
            "stp": stp,
        }
        if price is not None:
            command["price"] = str(price)
        if tif is not None:
            command["tif"] = tif
        if post_only:
            command["post_only"] = True
        if coid is not None:
            command["client_order_id"] = coid
        return command, lambda seq: model.new_order(
            seq, user, coid, side, price, qty, tif, post_only, stp
        )
    order = rng.choice(live)
    if roll < 0.8:
        by_coid = order.coid is not None and rng.random() < 0.5
        command = {"type": "cancel", "market": MARKET, "user": order.user}
        if by_coid:
            command["client_order_id"] = order.coid
        else:
            command["order_id"] = order.oid
        coid = order.coid if by_coid else None
        oid = None if by_coid else order.oid
        return command, lambda seq: model.cancel(seq, order.user, oid, coid)
    if roll < 0.97:
        new_price: int | None = rng.choice((None, rng.randint(95, 105)))
        new_qty: int | None = rng.choice((None, rng.randint(1, 8), order.qty))
        if new_price is None and new_qty is None:
            new_qty = max(1, order.qty - 1)
        command = {"type": "amend", "market": MARKET, "user": order.user, "order_id": order.oid}
        if new_price is not None:
            command["price"] = str(new_price)
        if new_qty is not None:
            command["qty"] = str(new_qty)
        return command, lambda seq: model.amend(seq, order.user, order.oid, new_price, new_qty)
    return {"type": "cancel_all", "user": user}, lambda seq: model.cancel_all(seq, user)


def simplify(rows: list[Row]) -> list[Row]:
    return [
        {"type": "rejected", "reason": r["reason"]} if r["type"] == "rejected" else r for r in rows
    ]


def new_engine() -> Engine:
    engine = Engine()
    engine.execute(
        {"type": "create_market", "market": MARKET, "tick_size": "1", "lot_size": "1"}, 0
    )
    return engine


def check_invariants(engine: Engine) -> None:
    market = engine.markets[MARKET]
    bid, ask = market.bids.best, market.asks.best
    assert bid is None or ask is None or bid < ask, "book crossed"
    for side in (market.bids, market.asks):
        for price, level in side.levels.items():
            orders = list(level.orders())
            assert orders and sum(o.qty for o in orders) == level.total
            assert all(o.price == price and o.qty > 0 for o in orders)
        assert sorted(side.levels) == list(side.prices)


def run_differential(seed: int, steps: int) -> list[Row]:
    rng = random.Random(seed)
    engine = new_engine()
    model = ModelMarket()
    rows: list[Row] = []
    for seq in range(1, steps + 1):
        command, expect = random_command(rng, model)
        got = [engine.encode(e) for e in engine.execute(command, seq)]
        assert simplify(got) == expect(seq), (seed, seq, command)
        rows += got
        check_invariants(engine)
    return rows


def assert_fill_conservation(rows: list[Row]) -> None:
    """Every fill has one taker and one maker of different users; per-user
    filled quantity on both sides sums to twice the traded quantity."""
    traded = 0
    per_user: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["type"] == "fill":
            assert row["taker_user"] != row["maker_user"]
            qty = int(row["qty"])
            traded += qty
            per_user[row["taker_user"]] += qty
            per_user[row["maker_user"]] += qty
    assert sum(per_user.values()) == 2 * traded


@pytest.mark.parametrize("seed", range(6))
def test_engine_matches_model(seed: int) -> None:
    rows = run_differential(seed, 1500)
    assert_fill_conservation(rows)
    assert any(r["type"] == "fill" for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 140))
def test_engine_matches_model_long(seed: int) -> None:
    assert_fill_conservation(run_differential(seed, 20_000))


def test_replaying_same_input_gives_identical_output() -> None:
    rng = random.Random(7)
    model = ModelMarket()
    engine = new_engine()
    commands = []
    for seq in range(1, 2001):
        command, expect = random_command(rng, model)
        expect(seq)  # keep the model (which picks targets) in step
        engine.execute(command, seq)
        commands.append(command)
    outputs = []
    for _ in range(2):
        again = new_engine()
        outputs.append(
            [again.encode(e) for seq, c in enumerate(commands, 1) for e in again.execute(c, seq)]
        )
    assert outputs[0] == outputs[1]
    assert again.digest() == engine.digest()


def test_fills_query_pages_equal_fill_events() -> None:
    rng = random.Random(11)
    model = ModelMarket()
    engine = new_engine()
    rows: list[Row] = []
    for seq in range(1, 1501):
        command, expect = random_command(rng, model)
        expect(seq)
        rows += [engine.encode(e) for e in engine.execute(command, seq)]
    for user in USERS:
        want = [
            (r["trade_id"], "taker" if r["taker_user"] == user else "maker")
            for r in rows
            if r["type"] == "fill" and user in (r["taker_user"], r["maker_user"])
        ]
        got: list[tuple[int, str]] = []
        query: Row = {"type": "fills", "user": user, "market": MARKET, "limit": 7}
        while True:
            (event,) = engine.execute(query, 0)
            page = engine.encode(event)
            got += [(f["trade_id"], f["liquidity"]) for f in page["fills"]]
            if page["next"] is None:
                break
            query["after"] = page["next"]
        assert got == want and len(want) > 7

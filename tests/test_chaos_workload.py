"""The workload's request generator keeps the promises the checker relies on."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

from chaos.fills_checks import ALL_MARKETS
from chaos.workload import MarketSpec, OrderGenerator, definitely_not_applied
from clob.engine import Engine
from gateway.client import ClientError, Disconnected

MARKETS = [
    MarketSpec("BTC-USD", Decimal("0.01"), Decimal("0.001"), 10_000),
    MarketSpec("ETH-USD", Decimal("0.01"), Decimal("0.01"), 10_000),
]


def test_generator_requests_are_valid_and_never_repeat_a_command() -> None:
    engine = Engine()
    for seq, spec in enumerate(MARKETS, start=1):
        engine.execute(
            {"type": "create_market", "market": spec.name, "tick_size": str(spec.tick),
             "lot_size": str(spec.lot)},
            seq,
        )  # fmt: skip
    generator = OrderGenerator("c1", random.Random(5), MARKETS)
    kinds: Counter[str] = Counter()
    rejections: Counter[str] = Counter()
    cids: set[str] = set()
    targeted: Counter[tuple[str, str, int]] = Counter()
    seq = len(MARKETS)
    for _ in range(3000):
        op, market, fields = generator.next_request()
        kinds[op] += 1
        assert fields.get("market", ALL_MARKETS) == market  # fills without one: every market
        if op == "new_order":
            assert fields["client_order_id"] not in cids, "a client_order_id is never reused"
            cids.add(fields["client_order_id"])
        if op in ("cancel", "amend"):
            assert "client_order_id" not in fields, "cancels and amends go by order_id"
            targeted[(op, market, fields["order_id"])] += 1
        seq += op not in ("orders", "fills")
        events = [
            engine.encode(e) for e in engine.execute({"type": op, "user": "u1", **fields}, seq)
        ]
        rejections.update(e["reason"] for e in events if e["type"] == "rejected")
        generator.learn(market, events, "u1")
    assert set(kinds) == {"new_order", "cancel", "amend", "cancel_all", "orders", "fills"}
    assert max(targeted.values()) == 1, "each order is cancelled at most once and amended once"
    # the workload is well-formed: only rejections that depend on the book's state
    assert set(rejections) <= {"unknown_order", "would_take"}, rejections
    assert rejections["unknown_order"] < kinds["cancel"] + kinds["amend"]


def test_failed_requests_are_classified() -> None:
    assert definitely_not_applied("new_order", ClientError("unavailable", "no leader"))
    assert not definitely_not_applied(
        "new_order", ClientError("timeout", "?", retryable=True, indeterminate=True)
    )
    assert not definitely_not_applied("cancel", Disconnected("gateway died"))
    assert not definitely_not_applied("amend", ClientError("internal", "bug"))
    assert definitely_not_applied("orders", Disconnected("gateway died")), "queries change nothing"

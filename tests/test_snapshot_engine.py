"""Snapshots: restore-and-continue equals never stopping; bytes are deterministic."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

try:  # tests/ as plain directory or as a package
    from engine_model import MARKET, ModelMarket
except ModuleNotFoundError:
    from tests.engine_model import MARKET, ModelMarket
try:  # tests/ as plain directory or as a package
    from test_engine_invariants import random_command
except ModuleNotFoundError:
    from tests.test_engine_invariants import random_command

from clob.engine import Engine

Row = dict[str, Any]


def command_stream(seed: int, count: int) -> list[Row]:
    """Random commands over two markets plus queries."""
    rng = random.Random(seed)
    model = ModelMarket()
    commands: list[Row] = [
        {"type": "create_market", "market": MARKET, "tick_size": "1", "lot_size": "1"},
        {"type": "create_market", "market": "B", "tick_size": "0.5", "lot_size": "0.01"},
    ]
    for seq in range(1, count + 1):
        command, expect = random_command(rng, model)
        expect(seq)
        commands.append(command)
        if rng.random() < 0.2:  # mirror some activity into market B
            other = dict(command)
            if "market" in other:
                other["market"] = "B"
            commands.append(other)
        if rng.random() < 0.05:
            commands.append({"type": "fills", "user": "u1", "limit": 5})
    return commands


def run(engine: Engine, commands: list[Row], first_seq: int) -> list[Row]:
    return [
        engine.encode(e)
        for seq, command in enumerate(commands, first_seq)
        for e in engine.execute(command, seq)
    ]


@pytest.mark.parametrize("seed", range(3))
def test_restore_then_continue_equals_never_stopping(seed: int) -> None:
    commands = command_stream(seed, 800)
    straight = Engine()
    expected = run(straight, commands, 1)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(commands)), 4))
    engine = Engine()
    got: list[Row] = []
    start = 0
    for cut in [*cuts, len(commands)]:
        got += run(engine, commands[start:cut], start + 1)
        data = engine.snapshot()
        engine = Engine.restore(data)
        assert engine.snapshot() == data
        start = cut
    assert got == expected
    assert engine.digest() == straight.digest()
    for user in ("u1", "u2", "u3", "u4"):
        for query in (
            {"type": "orders", "user": user},
            {"type": "fills", "user": user, "limit": 1000},
            {"type": "fills", "user": user, "market": MARKET, "after": 3, "limit": 4},
        ):
            assert run(engine, [query], 0) == run(straight, [query], 0)
    assert engine.market_specs() == straight.market_specs()


def test_equal_states_give_equal_bytes_and_digest() -> None:
    commands = command_stream(5, 300)
    a, b = Engine(), Engine()
    run(a, commands, 1)
    run(b, commands, 1)
    assert a.snapshot() == b.snapshot() and a.digest() == b.digest()
    run(b, [{"type": "new_order", "market": MARKET, "user": "z", "side": "buy",
             "order_type": "limit", "price": "1", "qty": "1"}], 10_000)  # fmt: skip
    assert a.digest() != b.digest()


def test_empty_engine_snapshot_round_trip() -> None:
    engine = Engine.restore(Engine().snapshot())
    assert engine.market_specs() == [] and engine.digest() == Engine().digest()


def test_restored_engine_keeps_queue_order_and_client_ids() -> None:
    engine = Engine()
    cmds: list[Row] = [
        {"type": "create_market", "market": "X", "tick_size": "0.01", "lot_size": "1"},
        {"type": "new_order", "market": "X", "user": "a", "side": "buy", "order_type": "limit",
         "price": "1.00", "qty": "1", "client_order_id": "first"},
        {"type": "new_order", "market": "X", "user": "b", "side": "buy", "order_type": "limit",
         "price": "1.00", "qty": "1"},
        {"type": "amend", "market": "X", "user": "a", "order_id": 1, "qty": "5"},
    ]  # fmt: skip
    run(engine, cmds, 1)
    restored = Engine.restore(engine.snapshot())
    dup = {"type": "new_order", "market": "X", "user": "a", "side": "buy",
           "order_type": "limit", "price": "0.5", "qty": "1",
           "client_order_id": "first"}  # fmt: skip
    assert run(restored, [dup], 5)[0]["reason"] == "duplicate_client_order_id"
    sell = {"type": "new_order", "market": "X", "user": "c", "side": "sell",
            "order_type": "limit", "price": "1", "qty": "1"}  # fmt: skip
    fill = run(restored, [sell], 6)[1]
    assert fill["maker_user"] == "b" and fill["trade_id"] == 1
    assert run(restored, [sell], 7)[0]["order_id"] == 4


def test_snapshot_is_versioned() -> None:
    version, _ = msgpack.unpackb(Engine().snapshot())
    assert version == 1
    with pytest.raises(ValueError, match="version"):
        Engine.restore(msgpack.packb([99, []]))

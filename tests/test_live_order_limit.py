"""A deployed market's cap on one user's live orders (shard/limits.py, docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from chaos.collect import read_offline
from clob.engine import Engine
from config.load import ConfigError, load_config
from config.render import write_config
from config.schema import ClusterConfig, MarketConfig, ReplicaConfig
from shard.engineapp import EngineApplication
from shard.limits import TOO_MANY_ORDERS, LimitedEngine
from shard.node.runtime import Replica
from shard.proposals import Proposal
from tests.data_dirs import GATEWAY, log_entries, write_data_dir
from tests.test_config import GOOD, write

CREATE = {"type": "create_market", "market": "M", "tick_size": "0.01", "lot_size": "1"}


def _order(user: str, price: str, **extra: Any) -> dict[str, Any]:
    command = {"type": "new_order", "market": "M", "user": user, "side": "buy",
               "order_type": "limit", "price": price, "qty": "1"}  # fmt: skip
    return {**command, **extra}


class _Run:
    def __init__(self, per_user: int) -> None:
        self.engine = LimitedEngine(Engine(), per_user)
        self.seq = 0
        self.run(CREATE)

    def run(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        self.seq += 1
        return [self.engine.encode(e) for e in self.engine.execute(command, self.seq)]


def test_a_user_at_the_cap_is_refused_until_an_order_leaves() -> None:
    run = _Run(per_user=3)
    for i in range(3):  # with and without client order ids: both count once
        extra = {"client_order_id": f"c{i}"} if i % 2 else {}
        assert run.run(_order("alice", f"1.0{i}", **extra))[0]["type"] == "accepted"
    (refused,) = run.run(_order("alice", "1.05", client_order_id="c9"))
    assert refused == {
        "type": "rejected",
        "seq": run.seq,
        "reason": TOO_MANY_ORDERS,
        "message": "at most 3 live orders per user in a market",
        "market": "M",
        "user": "alice",
        "client_order_id": "c9",
    }
    assert run.run(_order("bob", "1.05"))[0]["type"] == "accepted"  # others unaffected
    # a fill of someone else's order frees nothing of alice's; a cancel of hers does
    assert [e["type"] for e in run.run(_order("carol", "0.50", side="sell"))] == [
        "accepted",
        "fill",
    ]  # bob's 1.05 is the best bid
    assert run.run(_order("alice", "1.06"))[0]["reason"] == TOO_MANY_ORDERS
    run.run({"type": "cancel", "market": "M", "user": "alice", "client_order_id": "c1"})
    assert run.run(_order("alice", "1.06"))[0]["type"] == "accepted"
    # ill-formed commands still get the engine's own answer, and no cap means none
    assert run.run({**_order("alice", "1.07"), "user": 5})[0]["reason"] == "bad_command"
    unlimited = _Run(per_user=0)
    for i in range(5):
        assert unlimited.run(_order("alice", f"1.0{i}"))[0]["type"] == "accepted"


def test_the_replicated_application_applies_the_cap_and_keeps_it_after_a_restore() -> None:
    app = EngineApplication(max_live_orders_per_user=2)
    app.apply(1, orjson.dumps(CREATE))
    results = [app.apply(seq, orjson.dumps(_order("u", "1.00"))) for seq in (2, 3, 4)]
    assert [events[0]["type"] for events, _ in results] == ["accepted", "accepted", "rejected"]
    events, changes = results[2]
    assert events[0]["reason"] == TOO_MANY_ORDERS and list(changes) == []
    copy = EngineApplication(max_live_orders_per_user=2)
    copy.restore(app.snapshot())
    (again,), _ = copy.apply(5, orjson.dumps(_order("u", "1.00")))
    assert again["reason"] == TOO_MANY_ORDERS and copy.digest() == app.digest()


def _cluster(cap: int) -> ClusterConfig:
    members = tuple(
        ReplicaConfig(f"r{i}", f"127.0.0.1:{1 + i}", f"127.0.0.1:{10 + i}", f"/nonexistent/{i}")
        for i in range(3)
    )
    market = MarketConfig("BTC-USD", "0.01", "0.001", members, max_live_orders_per_user=cap)
    return ClusterConfig("limits", (market,))


def test_the_cap_comes_from_the_cluster_file(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, GOOD)).markets[0].max_live_orders_per_user == 10_000
    written = write_config(_cluster(7), tmp_path / "seven.toml")
    assert load_config(written).markets[0].max_live_orders_per_user == 7
    assert Replica(load_config(written), "r0").app.per_user == 7
    text = GOOD.replace('lot_size = "0.001"', 'lot_size = "0.001"\nmax_live_orders_per_user = -1')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert [path for path, _ in info.value.problems] == ["markets[0].max_live_orders_per_user"]


def test_chaos_reads_a_data_directory_with_the_cap_it_was_written_with(tmp_path: Path) -> None:
    """The offline reader re-applies the log: it must refuse what the replicas refused."""
    create = orjson.dumps({**CREATE, "market": "BTC-USD", "lot_size": "0.001"})
    orders = [orjson.dumps({**_order("u", "1.00"), "market": "BTC-USD"}) for _ in range(2)]
    batch = [Proposal(GATEWAY, 2, 2, orders[0]), Proposal(GATEWAY, 3, 2, orders[1])]
    write_data_dir(tmp_path, log_entries(create, [batch]), commit=3)
    capped = read_offline("BTC-USD", tmp_path, None, 1)
    assert [capped.entries[s].events[0]["type"] for s in (2, 3)] == ["accepted", "rejected"]
    free = read_offline("BTC-USD", tmp_path)
    assert [free.entries[s].events[0]["type"] for s in (2, 3)] == ["accepted", "accepted"]

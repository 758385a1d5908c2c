"""The generated chaos topology, the run report and the CLI's duration parsing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chaos.checker import CommittedEntry, CommittedLog, Violation
from chaos.committed import EngineBase
from chaos.history import FaultRecord, History
from chaos.report import first_ack_after, format_report
from chaos.topology import build_cluster, with_peer_addresses
from cli.chaos import parse_duration
from config.load import load_config
from config.render import write_config


def test_generated_config_round_trips_with_distinct_ports(tmp_path: Path) -> None:
    cluster = build_cluster(tmp_path)
    assert [m.name for m in cluster.markets] == ["BTC-USD", "ETH-USD"]
    assert all(len(m.replicas) == 3 for m in cluster.markets)
    assert [g.name for g in cluster.gateways] == ["gw-1", "gw-2"]
    path = write_config(cluster, tmp_path / "cluster.toml")
    assert load_config(path) == cluster
    addresses = [a for m in cluster.markets for r in m.replicas for a in (r.raft, r.client)]
    addresses += [g.listen for g in cluster.gateways]
    assert len(set(addresses)) == len(addresses) == 14


def test_each_replica_reaches_its_peers_through_its_own_links(tmp_path: Path) -> None:
    cluster = build_cluster(tmp_path)
    btc = cluster.markets[0]
    me = btc.replicas[0].name
    own = with_peer_addresses(
        cluster, me, lambda a, b: f"127.0.0.1:{61000 + 10 * int(a[-1]) + int(b[-1])}"
    )
    mine = own.markets[0].replicas
    assert mine[0] == btc.replicas[0], "a replica listens on its real address"
    assert [r.raft for r in mine[1:]] != [r.raft for r in btc.replicas[1:]]
    assert [r.client for r in mine] == [r.client for r in btc.replicas]
    assert own.markets[1] == cluster.markets[1]
    write_config(own, tmp_path / "own.toml")  # still a valid topology


def test_report_counts_outcomes_faults_and_violations() -> None:
    history = History()
    ok = history.invoke("c1", "u1", "new_order", "BTC-USD", {"market": "BTC-USD"})
    history.ok(ok, 2, [{"type": "accepted"}])
    lost = history.invoke("c1", "u1", "cancel", "BTC-USD", {"market": "BTC-USD", "order_id": 1})
    history.fail(lost, "unavailable")
    history.invoke("c2", "u2", "new_order", "ETH-USD", {"market": "ETH-USD"})
    history.close()
    start = history.operations[0].invoke_ns - 1
    fault = FaultRecord("kill_leader", "btc-usd-1", "BTC-USD", start, start + 10**9, "", 4 * 10**8)
    history.fault(fault)
    assert first_ack_after(fault, history.operations) == history.operations[0].complete_ns - start
    logs = {"BTC-USD": CommittedLog.from_entries("BTC-USD", [CommittedEntry(1, ())])}
    clean = format_report(history, start, logs, [])
    assert "violations: none" in clean
    assert "kill_leader" in clean and "400 ms" in clean
    total = next(line for line in clean.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "1", "1", "1"]
    bad = format_report(history, start, logs, [Violation("lost_ack", "BTC-USD", "seq 9 lost")])
    assert "violations: 1 (lost_ack 1)" in bad and "seq 9 lost" in bad
    assert "committed BTC-USD: seqs 1..1 (events only)" in clean
    create = {"type": "create_market", "market": "BTC-USD"}
    known = [CommittedEntry(1, (), create)]
    compacted = [CommittedEntry(1, ()), CommittedEntry(2, ()), CommittedEntry(3, (), create)]
    base = EngineBase(2, b"")
    cases = [(known, None, "(with commands)"), (compacted, base, "(commands of seqs 3..3)")]
    for entries, engine_base, shown in cases:
        log = CommittedLog.from_entries("BTC-USD", entries, engine_base)
        assert shown in format_report(history, start, {"BTC-USD": log}, [])


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0), ("45", 45.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration("ten minutes")


def test_cli_fault_kinds_match_the_harness() -> None:
    from chaos.faults import FAULT_KINDS
    from cli import chaos as cli_chaos

    assert cli_chaos.FAULT_KINDS == FAULT_KINDS


def test_history_dump_keeps_every_record(tmp_path: Path) -> None:
    history = History()
    pending = history.invoke("c1", "u1", "orders", "BTC-USD", {"market": "BTC-USD"})
    history.ok(pending, 3, [{"type": "orders", "orders": []}])
    history.subscribe("c1", "u1", "user", None).record({"seq": 3})
    history.fault(FaultRecord("kill_leader", "btc-usd-1", "BTC-USD", 1, 2))
    history.dump(tmp_path / "h.jsonl")
    rows = [orjson.loads(line) for line in (tmp_path / "h.jsonl").read_bytes().splitlines()]
    assert [r["record"] for r in rows] == ["op", "sub", "fault"]
    assert rows[2]["kind"] == "kill_leader" and rows[0]["seq"] == 3

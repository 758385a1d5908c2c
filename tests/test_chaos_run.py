"""Short real chaos runs: 2 markets x 3 replicas + 2 gateways under seeded faults."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chaos.run import ChaosSettings, run_chaos
from config.load import load_config

# Leader loss, a torn WAL tail, a replica replaced and a gateway kill in about 35 s.
KINDS = (
    "kill_leader", "isolate_leader", "torn_wal", "kill_gateway", "pause_leader",
    "replace_follower",
)  # fmt: skip


def _faults(run: Path) -> list[dict[str, object]]:
    lines = (run / "history.jsonl").read_text().splitlines()
    return [r for r in map(orjson.loads, lines) if r["record"] == "fault"]


@pytest.mark.processes
async def test_short_chaos_run_finds_no_violation(tmp_path: Path) -> None:
    lines: list[str] = []
    settings = ChaosSettings(
        seed=5, seconds=35, clients=4, kinds=KINDS, root=tmp_path / "run", snapshot_every=300
    )
    result = await run_chaos(settings, lines.append)
    assert result.violations == (), result.report
    assert result.operations > 30, result.report
    report = result.report
    assert "faults injected" in report and "violations: none" in report
    # the faults really happened and the system came back from them
    kinds = {f["kind"] for f in _faults(tmp_path / "run")}
    assert {"torn_wal", "replace_follower"} <= kinds, report
    # the replicas compacted their logs (a snapshot every 300 entries): the replay check
    # then starts from a snapshot's state instead of being skipped (in a market whose run
    # ended right at a snapshot no command follows it, so this asks it of one market)
    assert "from that snapshot's state" in report, report


@pytest.mark.processes
async def test_replicas_replaced_under_load_and_leader_kills(tmp_path: Path) -> None:
    """ETH-USD: a spare joins and a follower leaves, its leader is killed (the new voter
    must help elect), then a second replacement; the removed replicas' data directories
    are compared with the group's at the end. Every replica link is mutual TLS (through
    the fault proxies) and the clients reach the gateways over wss://."""
    settings = ChaosSettings(
        seed=3,
        seconds=30,
        clients=4,
        kinds=("replace_follower", "kill_leader"),
        root=tmp_path / "run",
        snapshot_every=300,
        tls=True,
    )
    result = await run_chaos(settings, lambda line: None)
    assert result.violations == (), result.report
    config = load_config(tmp_path / "run" / "cluster.toml")
    assert config.tls is not None and all(g.cert_file for g in config.gateways)
    faults = _faults(tmp_path / "run")
    replaced = [f for f in faults if f["kind"] == "replace_follower"]
    assert len(replaced) == 2, result.report
    for fault in replaced:
        assert fault["joined_ns"] and fault["removed_ns"], fault
    # fresh names each time: eth-usd-4 then eth-usd-5, each replacing an original
    assert [str(f["target"]).split(" <- ")[0] for f in replaced] == ["eth-usd-4", "eth-usd-5"]
    assert "membership: 2 replicas added as voter" in result.report
    # each removed replica's events (read as it left) and data directory were compared
    report = result.report
    assert report.count("read when it left") == report.count("on disk, compared") == 2, report
    # the events recorded during the run cover every seq: every acknowledgement is checked
    assert "committed ETH-USD: seqs 1.." in report, report

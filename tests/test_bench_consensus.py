"""The consensus benchmark commits real commands through three cores and real storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.bench_consensus import NAMES, encode_commands, run_consensus_bench
from shard.proposals import decode_batch
from shard.storage import Durability, open_storage


def test_encoded_entries_are_proposal_batches() -> None:
    proposals = decode_batch(encode_commands(40, 3))
    assert [(p.client_id, p.request_no, p.ack_below) for p in proposals] == [
        ("bench-client", 40, 40),
        ("bench-client", 41, 40),
        ("bench-client", 42, 40),
    ]


@pytest.mark.parametrize(
    ("durability", "parallel"),
    [(Durability.FSYNC, True), (Durability.FSYNC, False), (Durability.NONE, True)],
)
def test_group_commits_and_every_replica_recovers_the_log(
    tmp_path: Path, durability: Durability, parallel: bool
) -> None:
    result = run_consensus_bench(
        tmp_path, durability, 0.3, 16, 512, False, compact_every=20, parallel_sync=parallel
    )
    assert result["parallel_sync"] == (parallel and durability is Durability.FSYNC)
    assert result["commands"] > 0 and result["commands"] == 16 * result["entries"]
    assert result["snapshots"] >= 3
    assert (min(result["fsyncs"].values()) > 0) == (durability is Durability.FSYNC)
    leader_applied = max(result["applied_index"].values())
    for name in NAMES:
        storage, recovered = open_storage(tmp_path / name, durability)
        storage.close()
        assert recovered.snapshot is not None
        last = recovered.entries[-1].index if recovered.entries else recovered.snapshot.meta.index
        assert recovered.hard_state.commit <= last
        assert last >= result["applied_index"][name] >= leader_applied - 100

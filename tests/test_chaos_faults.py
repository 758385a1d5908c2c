"""The seeded fault planner and the offline reader of a replica's committed commands."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson

from chaos.checker import CommittedEntry, CommittedLog, check_replay
from chaos.collect import merge_best, merge_logs, read_offline
from chaos.faults import FAULT_KINDS, plan_faults
from clob.engine import Engine
from shard.engineapp import EngineApplication
from shard.proposals import Proposal
from shard.statemachine import ReplicatedStateMachine
from tests.data_dirs import GATEWAY, log_entries, write_data_dir

MARKETS = ["BTC-USD", "ETH-USD"]


def test_plan_is_seeded_sequential_and_varied() -> None:
    plan = plan_faults(7, 120, MARKETS, election_timeout_s=0.6)
    assert plan == plan_faults(7, 120, MARKETS, election_timeout_s=0.6)
    assert plan != plan_faults(8, 120, MARKETS, election_timeout_s=0.6)
    assert {f.kind for f in plan} == set(FAULT_KINDS)  # 120 s is enough for one full round
    for before, after in itertools.pairwise(plan):
        assert before.at + before.duration < after.at, "faults never overlap"
    assert plan[-1].at + plan[-1].duration < 120
    # pauses and partitions outlast the election timeout so leadership really moves
    assert all(f.duration > 0.6 for f in plan)
    assert all(1 <= f.nbytes <= 64 for f in plan if f.kind == "torn_wal")


def test_short_runs_get_few_faults_and_kinds_can_be_chosen() -> None:
    assert plan_faults(1, 4, MARKETS, election_timeout_s=0.6) == []
    only = plan_faults(1, 60, MARKETS, election_timeout_s=0.6, kinds=["kill_leader"])
    assert only and {f.kind for f in only} == {"kill_leader"}


def _command(i: int) -> bytes:
    return orjson.dumps(
        {
            "type": "new_order", "market": "BTC-USD", "user": "u1", "client_order_id": f"c{i}",
            "side": "buy", "order_type": "limit", "price": "100.00", "qty": "0.001",
        }
    )  # fmt: skip


def test_offline_reader_returns_committed_commands_once(tmp_path: Path) -> None:
    create = orjson.dumps(
        {"type": "create_market", "market": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}
    )
    gw = GATEWAY
    batches = [
        [Proposal(gw, 2, 2, _command(1)), Proposal(gw, 3, 2, _command(2))],
        [Proposal(gw, 3, 2, _command(2))],  # a retry: the session table drops it
        [Proposal(gw, 4, 4, _command(3))],  # past the commit index: not committed
    ]
    write_data_dir(tmp_path, log_entries(create, batches), commit=4)
    log = read_offline("BTC-USD", tmp_path)
    assert (log.first_seq, log.last_seq) == (1, 3)
    commands = [log.entries[s].command for s in (1, 2, 3)]
    assert [c["type"] for c in commands if c] == ["create_market", "new_order", "new_order"]
    assert [c.get("client_order_id") for c in commands if c] == [None, "c1", "c2"]
    assert log.entries[2].events[0]["type"] == "accepted"
    assert log.entries[3].events[0]["order_id"] == 2
    # merged with the live events of a replica, commands fill in where the seqs match
    live = {"r1": [CommittedEntry(s, log.entries[s].events) for s in (1, 2, 3)]}
    merged = merge_logs("BTC-USD", live, log)
    assert merged.has_commands() and merged.last_seq == 3
    assert not merge_logs("BTC-USD", live, None).has_commands()
    # no replica could stream from seq 1: the data directory's copy stands in
    fallback = merge_logs("BTC-USD", {"r1": []}, log)
    assert fallback.has_commands() and fallback.last_seq == 3


def test_offline_reader_after_a_snapshot_gives_the_state_to_replay_from(tmp_path: Path) -> None:
    """A compacted log keeps only the commands after its snapshot; the snapshot's engine
    state comes with them, and replaying them from it gives the events the replica applied."""
    create = orjson.dumps(
        {"type": "create_market", "market": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}
    )
    gw = GATEWAY
    batches = [
        [Proposal(gw, 2, 2, _command(1)), Proposal(gw, 3, 2, _command(2))],
        [Proposal(gw, 4, 4, _command(3))],
        [Proposal(gw, 5, 5, _command(4))],
    ]
    entries = log_entries(create, batches)
    machine = ReplicatedStateMachine(EngineApplication())
    for entry in entries[:3]:  # through index 3: seqs 1..3
        machine.apply_entry(entry)
    write_data_dir(tmp_path, entries, commit=5, snapshot=(3, machine.snapshot()))

    log = read_offline("BTC-USD", tmp_path)
    assert (log.first_seq, log.last_seq) == (4, 5)
    assert log.base is not None and log.base.seq == 3
    # the live replica streamed every event from seq 1; commands are known from seq 4 only
    recorder = _Recorder()
    full = ReplicatedStateMachine(recorder)
    for entry in entries:
        full.apply_entry(entry)
    live = {"r1": [CommittedEntry(seq, events) for seq, events in recorder.events]}
    merged = merge_logs("BTC-USD", live, log)
    assert not merged.has_commands() and merged.replay_range() == (4, 5)
    assert check_replay([], {"BTC-USD": merged}, Engine, None, Engine.restore) == []
    assert check_replay([], {"BTC-USD": merged}, Engine) == []  # no way to restore: skipped
    # a replica that applied something else after the snapshot is caught
    wrong = dict(merged.entries[5].events[0], price="99.00")
    tampered = merge_logs(
        "BTC-USD",
        {"r1": [*live["r1"][:4], CommittedEntry(5, (wrong, *merged.entries[5].events[1:]))]},
        log,
    )
    found = check_replay([], {"BTC-USD": tampered}, Engine, None, Engine.restore)
    assert [v.kind for v in found] == ["replay_mismatch"] and "seq 5" in found[0].message
    # a replica whose persisted commit index lags gives fewer commands: the other is used
    lagging = CommittedLog.from_entries("BTC-USD", [log.entries[4]], log.base)
    assert merge_logs("BTC-USD", live, lagging).replay_range() == (4, 4)
    for copies in ([lagging, log], [log, lagging]):
        assert merge_best("BTC-USD", live, copies).replay_range() == (4, 5)
    assert merge_best("BTC-USD", live, []).replay_range() is None


class _Recorder(EngineApplication):
    """Keeps every applied seq's encoded events, as a replica's event stream would give them."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[int, tuple[dict[str, object], ...]]] = []

    def apply(self, seq: int, command: bytes) -> object:
        result = super().apply(seq, command)
        self.events.append((seq, tuple(result[0])))
        return result


def test_merge_joins_sources_that_each_cover_part_of_the_log() -> None:
    """Replicas restarted from snapshots stream events only from there and a data directory
    holds only what follows its snapshot: together they give the longest gapless run."""

    def entry(seq: int, with_command: bool = False) -> CommittedEntry:
        command = {"type": "cancel", "order_id": seq} if with_command else None
        return CommittedEntry(seq, ({"type": "cancelled", "seq": seq},), command)

    live = {
        "r1": [entry(s) for s in range(40, 61)],  # restarted from a snapshot at 39
        "r2": [entry(s) for s in range(55, 61)],
        "r3": [],  # could not stream at all
    }
    offline = CommittedLog.from_entries("M", [entry(s, True) for s in range(20, 50)])
    merged = merge_logs("M", live, offline)
    assert (merged.first_seq, merged.last_seq) == (20, 60)
    assert merged.entries[45].command is not None and merged.entries[55].command is None
    # a gap between the sources: the longest run is kept, not the earliest
    apart = CommittedLog.from_entries("M", [entry(s, True) for s in range(1, 10)])
    merged = merge_logs("M", live, apart)
    assert (merged.first_seq, merged.last_seq) == (40, 60)
    nothing = merge_logs("M", {"r1": []}, None)
    assert (nothing.first_seq, nothing.last_seq) == (1, 0)

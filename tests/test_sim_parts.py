"""The simulator's own models: disk durability, network faults, the checker."""

from __future__ import annotations

import random

import pytest

from shard.raft.messages import Heartbeat
from shard.records import Entry, EntryKind, HardState
from shard.sessions import Verdict
from shard.sim.checker import Checker, Violation
from shard.sim.disk import SimDisk
from shard.sim.network import SimNetwork
from shard.statemachine import Outcome


def e(index: int, term: int = 1, data: bytes = b"") -> Entry:
    return Entry(term, index, EntryKind.NORMAL, data or b"%d" % index)


def test_crash_loses_unsynced_writes() -> None:
    d = SimDisk()
    d.write_ready(None, (e(1), e(2)), HardState(1, "a", 0))
    d.sync()
    d.write_ready(None, (e(3),), HardState(2, None, 2))
    d.crash(random.Random(0), torn=0.0)
    assert [x.index for x in d.durable.entries] == [1, 2]
    assert d.durable.hard_state == HardState(1, "a", 0)


def test_torn_crash_keeps_a_prefix_of_the_unsynced_writes() -> None:
    kept = set()
    for seed in range(40):
        d = SimDisk()
        d.write_ready(None, tuple(e(i) for i in range(1, 6)), HardState(1, None, 0))
        d.crash(random.Random(seed), torn=1.0)
        idx = [x.index for x in d.durable.entries]
        assert idx == list(range(1, len(idx) + 1))  # always a prefix
        if d.durable.hard_state.term == 1:
            assert len(idx) == 5  # the hard state was written after all entries
        kept.add(len(idx))
    assert len(kept) > 2


def test_entries_write_replaces_the_suffix() -> None:
    d = SimDisk()
    d.write_ready(None, (e(1), e(2), e(3)), None)
    d.write_ready(None, (e(2, term=2),), None)
    d.sync()
    assert [(x.index, x.term) for x in d.durable.entries] == [(1, 1), (2, 2)]


def test_network_partition_and_one_way_cut() -> None:
    net = SimNetwork(random.Random(1), min_delay=1, max_delay=1)
    net.block("a", "b")
    net.send(Heartbeat("a", "b", 1, 0), now=0)
    net.send(Heartbeat("b", "a", 1, 0), now=0)
    assert [(m.src, m.dst) for m in net.due(5)] == [("b", "a")]
    net.send(Heartbeat("b", "a", 1, 0), now=5)
    net.partition(["a"], ["b"])  # cut while in flight: dropped on arrival
    assert net.due(10) == []
    net.heal()
    net.send(Heartbeat("a", "b", 1, 0), now=10)
    assert len(net.due(11)) == 1


def test_network_duplicates_and_reorders_deterministically() -> None:
    def run(seed: int) -> list[int]:
        net = SimNetwork(random.Random(seed), min_delay=1, max_delay=4, duplicate=0.3)
        for i in range(30):
            net.send(Heartbeat("a", "b", 1, i), now=0)
        return [m.commit for m in net.due(100) if isinstance(m, Heartbeat)]

    out = run(3)
    assert out == run(3)
    assert len(out) > 30 and out != sorted(out)


def test_checker_catches_two_leaders_in_one_term() -> None:
    from shard.sim.lockstep import LockstepCluster

    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    chk = Checker()
    chk.on_leader("a", c.nodes["a"])
    with pytest.raises(Violation, match="election safety"):
        chk.on_leader("b", c.nodes["a"])


def test_checker_catches_overwritten_committed_entry_and_log_mismatch() -> None:
    chk = Checker()
    chk.on_entries("a", 0, (e(1, 1, b"x"), e(2, 1, b"y")))
    chk.on_apply("a", e(1, 1, b"x"))
    with pytest.raises(Violation, match="log matching"):
        chk.on_entries("b", 0, (e(1, 1, b"other"),))
    # A lagging node may briefly hold a stale entry at a committed index ...
    chk.on_entries("c", 0, (e(1, 2, b"z"),))
    # ... but must never apply it,
    with pytest.raises(Violation, match="state machine safety"):
        chk.on_apply("c", e(1, 2, b"z"))
    # and a node that held the committed entry must never replace it.
    with pytest.raises(Violation, match="committed entry lost"):
        chk.on_entries("a", 0, (e(1, 3, b"w"),))


def test_checker_compares_acknowledged_results_as_a_client_receives_them() -> None:
    chk = Checker()
    out = Outcome(3, "c", 1, Verdict.NEW, None, 7)
    chk.on_outcome("n1", out)
    fresh = ([{"type": "accepted", "order_id": 1}], [("M", "buy", "1", "2")])
    chk.on_ack("c", 1, 7, fresh)
    # remembered since a snapshot restore: lists, the same MessagePack bytes
    chk.on_ack("c", 1, 7, [[{"type": "accepted", "order_id": 1}], [["M", "buy", "1", "2"]]])
    with pytest.raises(Violation, match="exactly once"):
        chk.on_ack("c", 1, 7, [[{"type": "accepted", "order_id": 2}], []])
    with pytest.raises(Violation, match="exactly once"):
        chk.on_ack("c", 1, 8, fresh)

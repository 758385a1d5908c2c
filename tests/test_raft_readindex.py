"""Linearizable reads through ReadIndex, at cluster level."""

from __future__ import annotations

import pytest

from shard.raft import NotLeader
from shard.raft.messages import Heartbeat
from shard.sim.lockstep import LockstepCluster


def test_leader_read_needs_a_heartbeat_quorum() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    c.propose("a", b"w")
    c.isolate("a")
    c.nodes["a"].read_index(b"a:1")
    c.process()
    assert c.read_states["a"] == []  # a deposed leader must not answer
    c.heal()
    c.tick(["a"])
    assert c.read_states["a"] == [(b"a:1", c.nodes["a"].log.committed)]


def test_reads_are_batched_behind_one_heartbeat_round() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    c.isolate("a")
    for i in range(3):
        c.nodes["a"].read_index(b"a:%d" % i)
    c.process()
    c.heal()
    c.sent.clear()
    c.tick(["a"])
    rounds = {m.context for m in c.sent if isinstance(m, Heartbeat)}
    assert rounds == {b"a:2"}  # the latest context confirms every earlier read
    assert [ctx for ctx, _ in c.read_states["a"]] == [b"a:0", b"a:1", b"a:2"]


def test_follower_read_is_forwarded_and_returns_the_leaders_commit() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    for i in range(4):
        c.propose("a", b"%d" % i)
    c.nodes["c"].read_index(b"c:1")
    c.process()
    assert c.read_states["c"] == [(b"c:1", c.nodes["a"].log.committed)]


def test_read_without_any_leader_is_refused() -> None:
    c = LockstepCluster(["a", "b", "c"])
    with pytest.raises(NotLeader):
        c.nodes["b"].read_index(b"b:1")


def test_single_node_group_answers_at_once() -> None:
    c = LockstepCluster(["solo"])
    c.elect("solo")
    c.propose("solo", b"x")
    c.nodes["solo"].read_index(b"s:1")
    c.process()
    assert c.read_states["solo"] == [(b"s:1", 2)]

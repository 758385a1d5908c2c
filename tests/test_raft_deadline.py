"""``Raft.ticks_to_deadline``: an owner that sleeps until then misses no tick that matters."""

from __future__ import annotations

import copy
import random

import pytest

from shard.raft import Raft, RaftConfig, Role
from shard.raft.messages import Heartbeat, SnapshotResponse
from shard.raft.progress import ProgressState
from shard.sim.lockstep import LockstepCluster


def _config(node: str) -> RaftConfig:
    return RaftConfig(
        node_id=node,
        election_tick=12,
        heartbeat_tick=5,
        snapshot_retransmit_ticks=2,  # shorter than the heartbeat: a deadline of its own
        max_msg_entries=2,
        snapshot_chunk_bytes=16,  # several chunks, so retransmission timers run
    )


def _quiet_for(raft: Raft, ticks: int) -> bool:
    """Whether ``ticks`` ticks of a copy of ``raft`` (and nothing else) stay unobservable."""
    probe = copy.deepcopy(raft)
    role, term, lead = probe.role, probe.term, probe.lead
    for _ in range(ticks):
        probe.tick()
    return not probe.msgs and (probe.role, probe.term, probe.lead) == (role, term, lead)


def _check_every_node(c: LockstepCluster) -> None:
    for node, raft in c.nodes.items():
        assert not raft.msgs  # the cluster quiesced: the probe starts from no output
        due = raft.ticks_to_deadline()
        if due is None:
            assert not raft.promotable() and raft.role is not Role.LEADER
            assert _quiet_for(raft, 50), node
            continue
        assert due >= 1
        assert _quiet_for(raft, due - 1), (node, raft.role, due)
        if raft.role is not Role.LEADER:
            # Tight for a voter that is not leading: it campaigns exactly then.
            assert not _quiet_for(raft, due), (node, due)


@pytest.mark.parametrize("seed", range(6))
def test_no_tick_before_the_deadline_does_anything(seed: int) -> None:
    rng = random.Random(seed)
    c = LockstepCluster(["a", "b", "c"], seed=seed, learners=["d"], make_config=_config)
    for step in range(120):
        action = rng.random()
        leader = c.leader()
        if action < 0.45:
            nodes = [n for n in c.nodes if rng.random() < 0.8]
            c.tick(nodes, times=rng.randint(1, 4))
        elif action < 0.7 and leader is not None:
            for i in range(rng.randint(1, 5)):
                try:
                    c.nodes[leader].propose(f"{step}/{i}".encode())
                except Exception:  # NotLeader / ProposalDropped: the walk goes on
                    break
            c.process()
        elif action < 0.78 and leader is not None:
            raft = c.nodes[leader]
            applied = raft.log.applied
            if applied > raft.log.snap_index:
                raft.compact(applied, b"state-" + str(applied).encode() * 4)
        elif action < 0.86:
            c.isolate(rng.choice(list(c.nodes)))
        elif action < 0.93:
            c.heal()
        elif leader is not None:
            c.nodes[leader].read_index(f"r{step}".encode())
            c.process()
        _check_every_node(c)


def test_a_leader_sending_a_snapshot_wakes_for_the_retransmission() -> None:
    c = LockstepCluster(["a", "b", "c"], make_config=_config)
    c.elect("a")
    c.isolate("c")
    for i in range(12):
        c.propose("a", f"x{i}".encode())
    a = c.nodes["a"]
    a.compact(a.log.applied, b"s" * 100)
    c.heal()
    c.intercept = lambda m: not isinstance(m, SnapshotResponse)  # chunks go unanswered
    for _ in range(10):  # the next heartbeat round finds c behind the compacted log
        if a.progress["c"].state is ProgressState.SNAPSHOT:
            break
        c.tick(["a"])
    assert a.progress["c"].state is ProgressState.SNAPSHOT
    due = a.ticks_to_deadline()
    assert due == min(
        _config("a").snapshot_retransmit_ticks - a.progress["c"].snapshot_idle,
        _config("a").heartbeat_tick - a.heartbeat_elapsed,
        _config("a").election_tick - a.election_elapsed,
    )
    assert _quiet_for(a, due - 1)


def test_follower_deadline_restarts_when_the_leader_is_heard() -> None:
    c = LockstepCluster(["a", "b", "c"], make_config=_config)
    c.elect("a")
    b = c.nodes["b"]
    full = b.randomized_timeout
    assert b.ticks_to_deadline() == full
    c.tick(["b"], times=2)
    assert b.ticks_to_deadline() == full - 2
    b.step(Heartbeat("a", "b", c.nodes["a"].term, 0, b""))
    assert b.ticks_to_deadline() == b.randomized_timeout
    leader = c.nodes["a"]
    assert leader.ticks_to_deadline() == _config("a").heartbeat_tick - leader.heartbeat_elapsed


def test_learner_has_no_deadline_and_leader_always_has_one() -> None:
    c = LockstepCluster(["a", "b"], learners=["l"], make_config=_config)
    assert c.nodes["l"].ticks_to_deadline() is None
    c.elect("a")
    assert c.nodes["l"].ticks_to_deadline() is None
    due = c.nodes["a"].ticks_to_deadline()
    assert due is not None and 1 <= due <= _config("a").heartbeat_tick

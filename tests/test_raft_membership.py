"""Single-server membership changes with a catching-up learner, and leadership transfer."""

from __future__ import annotations

import random

import pytest

from shard.raft import (
    ChangeKind,
    InvalidChange,
    MembershipChange,
    ProposalDropped,
    Raft,
    RaftConfig,
    Role,
)
from shard.raft.membership import encode_membership
from shard.raft.messages import AppendEntries, TimeoutNow
from shard.records import Entry, EntryKind, Membership
from shard.sim.lockstep import LockstepCluster


def add(node: str) -> MembershipChange:
    return MembershipChange(ChangeKind.ADD_LEARNER, node)


def promote(node: str) -> MembershipChange:
    return MembershipChange(ChangeKind.PROMOTE, node)


def remove(node: str) -> MembershipChange:
    return MembershipChange(ChangeKind.REMOVE, node)


def cluster() -> LockstepCluster:
    c = LockstepCluster(
        ["a", "b", "c"], make_config=lambda n: RaftConfig(node_id=n, learner_catchup_lag=0)
    )
    c.elect("a")
    for i in range(10):
        c.propose("a", b"%d" % i)
    return c


def test_learner_catches_up_without_voting_then_is_promoted() -> None:
    c = cluster()
    c.add_node("d")  # a fresh node: empty log, no membership yet
    c.blocked |= {("a", "d")}  # d cannot catch up yet
    c.nodes["a"].propose_membership(add("d"))
    c.process()
    assert c.nodes["a"].membership == Membership(("a", "b", "c"), ("d",))
    with pytest.raises(ProposalDropped, match="caught up"):
        c.nodes["a"].propose_membership(promote("d"))
    # The learner does not count towards commitment: a, b, c still decide alone.
    c.isolate("c")
    c.propose("a", b"without c")
    assert c.nodes["a"].log.committed == c.nodes["a"].log.last_index()
    c.heal()
    c.tick(times=3)
    assert c.normal_applied("d") == c.normal_applied("a")
    assert c.nodes["d"].role is Role.FOLLOWER and not c.nodes["d"].promotable()
    c.nodes["a"].propose_membership(promote("d"))
    c.tick(times=2)
    assert all(r.membership.voters == ("a", "b", "c", "d") for r in c.nodes.values())
    # Four voters: a majority is now three.
    c.isolate("c")
    c.isolate("d")
    c.propose("a", b"needs three")
    assert c.nodes["a"].log.term(c.nodes["a"].log.committed) is not None
    assert b"needs three" not in c.normal_applied("a")


def test_only_one_change_at_a_time() -> None:
    c = cluster()
    c.isolate("b")
    c.isolate("c")
    c.nodes["a"].propose_membership(add("d"))
    with pytest.raises(ProposalDropped, match="uncommitted"):
        c.nodes["a"].propose_membership(add("e"))


def test_invalid_changes_are_refused() -> None:
    c = cluster()
    with pytest.raises(InvalidChange):
        c.nodes["a"].propose_membership(promote("b"))
    with pytest.raises(InvalidChange):
        c.nodes["a"].propose_membership(remove("zz"))


def test_config_takes_effect_when_appended_and_reverts_if_truncated() -> None:
    c = cluster()
    c.isolate("a")
    c.nodes["a"].propose_membership(remove("c"))
    c.process()
    assert c.nodes["a"].membership.voters == ("a", "b")  # in force although uncommitted
    assert c.nodes["b"].membership.voters == ("a", "b", "c")
    for _ in range(60):
        c.tick(["b", "c"])
        if Role.LEADER in (c.nodes["b"].role, c.nodes["c"].role):
            break
    c.heal()
    c.tick(times=3)
    assert c.leader() in ("b", "c")
    assert list(c.nodes["a"].membership.voters) == ["a", "b", "c"]  # the change was truncated


def test_removed_leader_steps_down_after_commit() -> None:
    c = cluster()
    c.nodes["a"].propose_membership(remove("a"))
    c.tick(times=2)
    assert c.nodes["a"].role is Role.FOLLOWER and not c.nodes["a"].promotable()
    for _ in range(40):
        if c.leader() in ("b", "c"):
            break
        c.tick()
    new = c.leader()
    assert new in ("b", "c")
    c.propose(new, b"after removal")
    assert b"after removal" in c.normal_applied("b")


def test_leadership_transfer_catches_up_target_first() -> None:
    c = cluster()
    c.isolate("c")
    for i in range(5):
        c.propose("a", b"more%d" % i)
    c.heal()
    c.sent.clear()
    c.nodes["a"].transfer_leader("c")
    with pytest.raises(ProposalDropped):
        c.nodes["a"].propose(b"during transfer")
    c.process()
    timeouts = [m for m in c.sent if isinstance(m, TimeoutNow)]
    assert [m.dst for m in timeouts] == ["c"]
    assert c.leader() == "c"
    assert c.nodes["a"].role is Role.FOLLOWER
    c.propose("c", b"new leader")
    assert c.normal_applied("a")[-1] == b"new leader"


def test_transfer_is_abandoned_after_an_election_timeout() -> None:
    c = cluster()
    c.isolate("c")
    c.nodes["a"].transfer_leader("c")
    c.tick(["a", "b"], times=10)
    assert c.leader() == "a"
    c.propose("a", b"accepted again")


def test_replaced_config_entry_at_same_index_takes_the_new_membership() -> None:
    r = Raft(RaftConfig(node_id="b"), random.Random(0), membership=Membership(("a", "b", "c")))
    first = Entry(1, 1, EntryKind.CONFIG, encode_membership(Membership(("a", "b"))))
    r.step(AppendEntries("a", "b", 1, 0, 0, (first,), commit=0))
    assert r.membership.voters == ("a", "b")
    other = Entry(2, 1, EntryKind.CONFIG, encode_membership(Membership(("a", "b", "c"), ("d",))))
    r.step(AppendEntries("c", "b", 2, 0, 0, (other,), commit=0))
    assert r.membership == Membership(("a", "b", "c"), ("d",))

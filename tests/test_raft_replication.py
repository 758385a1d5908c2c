"""Log replication: batching, pipelining, flow control, and the commit rule of §5.4.2."""

from __future__ import annotations

import random

import attrs
import pytest

from shard.raft import NotLeader, ProposalDropped, Raft, RaftConfig, Role
from shard.raft.messages import AppendEntries, AppendResponse, Message
from shard.records import EntryKind, Membership
from shard.sim.lockstep import LockstepCluster


def test_committed_entries_reach_every_node_in_order() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    for i in range(20):
        c.propose("a", b"v%d" % i)
    c.tick(times=2)
    expected = [b"v%d" % i for i in range(20)]
    assert all(c.normal_applied(n) == expected for n in c.nodes)


def test_followers_refuse_proposals_with_leader_hint() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    with pytest.raises(NotLeader) as info:
        c.nodes["b"].propose(b"x")
    assert info.value.leader == "a"


def test_appends_are_batched_up_to_the_message_limits() -> None:
    c = LockstepCluster(
        ["a", "b", "c"], make_config=lambda n: RaftConfig(node_id=n, max_msg_entries=3)
    )
    c.elect("a")
    c.blocked.add(("a", "b"))
    for i in range(10):
        c.propose("a", b"p%d" % i)
    c.sent.clear()
    c.heal()
    c.tick(times=3)
    to_b = [m for m in c.sent if isinstance(m, AppendEntries) and m.dst == "b" and m.entries]
    assert max(len(m.entries) for m in to_b) == 3
    assert c.normal_applied("b") == [b"p%d" % i for i in range(10)]


def test_byte_limit_bounds_a_message_but_always_sends_one_entry() -> None:
    c = LockstepCluster(
        ["a", "b", "c"], make_config=lambda n: RaftConfig(node_id=n, max_msg_bytes=100)
    )
    c.elect("a")
    c.blocked.add(("a", "b"))
    for _ in range(4):
        c.propose("a", b"z" * 60)
    c.propose("a", b"y" * 500)
    c.sent.clear()
    c.heal()
    c.tick(times=4)
    to_b = [m for m in c.sent if isinstance(m, AppendEntries) and m.dst == "b" and m.entries]
    assert all(sum(len(e.data) + 16 for e in m.entries) <= 100 or len(m.entries) == 1 for m in to_b)
    assert len(c.normal_applied("b")) == 5


def test_pipelining_keeps_at_most_the_window_in_flight() -> None:
    window = 3
    c = LockstepCluster(
        ["a", "b", "c"],
        make_config=lambda n: RaftConfig(node_id=n, max_msg_entries=1, max_inflight=window),
    )
    c.elect("a")
    held: list[Message] = []

    def hold_acks_from_b(m: Message) -> bool:
        if isinstance(m, AppendResponse) and m.src == "b":
            held.append(m)
            return False
        return True

    c.intercept = hold_acks_from_b
    c.sent.clear()
    for i in range(10):
        c.propose("a", b"q%d" % i)
    with_entries = [
        m for m in c.sent if isinstance(m, AppendEntries) and m.dst == "b" and m.entries
    ]
    assert len(with_entries) == window  # stalled: nothing acknowledged
    assert c.nodes["a"].progress["b"].state.value == "replicate"
    c.intercept = None
    c.queue.extend(held)
    c.tick(times=3)
    assert len(c.normal_applied("b")) == 10


def test_flow_control_refuses_proposals_beyond_uncommitted_limit() -> None:
    c = LockstepCluster(
        ["a", "b", "c"], make_config=lambda n: RaftConfig(node_id=n, max_uncommitted_entries=5)
    )
    c.elect("a")
    c.isolate("a")
    for i in range(5):
        c.propose("a", b"%d" % i)
    with pytest.raises(ProposalDropped):
        c.nodes["a"].propose(b"too many")


def test_lagging_follower_catches_up_after_partition() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    c.isolate("c")
    for i in range(30):
        c.propose("a", b"%d" % i)
    c.heal()
    c.tick(times=3)
    assert c.normal_applied("c") == c.normal_applied("a")
    assert len(c.normal_applied("c")) == 30


def _win(c: LockstepCluster, node: str) -> None:
    """Campaign until ``node`` leads (a first try may hit a term whose vote is taken)."""
    for _ in range(3):
        c.elect(node)
        if c.nodes[node].role is Role.LEADER:
            return
    raise AssertionError(f"{node} cannot win")


def _figure8(unsafe: bool) -> LockstepCluster:
    """The scenario of the Raft paper's Figure 8 (§5.4.2), step by step.

    s1 (term 2 here) gets an entry onto s2 only; s5 leads a term with a
    conflicting entry only it has; s1 leads again and brings its old entry
    to a majority while its own NOOP stays unreplicated; then s5 wins again.
    """
    c = LockstepCluster(
        ["s1", "s2", "s3", "s4", "s5"],
        make_config=lambda n: RaftConfig(
            node_id=n,
            pre_vote=False,
            check_quorum=False,
            max_msg_entries=1,
            unsafe_commit_old_terms=unsafe,
        ),
    )
    c.elect("s1")  # term 1, NOOP at index 1 committed everywhere
    c.tick(times=1)
    c.isolate("s1")
    c.heal()
    for other in ("s3", "s4", "s5"):
        c.blocked |= {("s1", other)}
    c.propose("s1", b"x")  # index 2 on s1 and s2 only
    c.heal()
    c.isolate("s1")
    c.blocked -= {("s1", "s2"), ("s2", "s1")}
    # s5 wins term 2 with s3 and s4, but its NOOP (index 2) never leaves s5.
    c.intercept = lambda m: not (isinstance(m, AppendEntries) and m.src == "s5")
    c.blocked |= {("s5", "s2"), ("s2", "s5")}
    c.elect("s5")
    assert c.nodes["s5"].role is Role.LEADER
    c.intercept = None
    c.heal()
    c.isolate("s5")
    c.restart("s1")  # s1 crashed meanwhile and comes back as a follower

    # s1 wins term 3 with s2, s3; only its old entry (index 2, term 1) reaches s3.
    def strip_noop(m: Message) -> bool:
        if isinstance(m, AppendEntries) and m.src == "s1" and m.prev_index == 2:
            # The NOOP never arrives; an empty probe at the same point does.
            c.nodes[m.dst].step(attrs.evolve(m, entries=()))
            return False
        return True

    c.intercept = strip_noop
    c.blocked |= {("s1", "s4"), ("s4", "s1")}
    _win(c, "s1")
    assert [c.nodes[n].log.term(2) for n in ("s1", "s2", "s3")] == [1, 1, 1]
    c.tick(["s1"], times=2)
    if unsafe:
        return c  # the caller inspects the hazard before anything else happens
    # s1 fails; s5 (last term 2) wins with s2, s3, s4 (last term 1) and overwrites index 2.
    c.intercept = None
    c.heal()
    c.isolate("s1")
    c.restart("s5")
    _win(c, "s5")
    c.tick(times=2)
    return c


def test_figure8_old_term_entry_is_not_committed_by_counting() -> None:
    c = _figure8(unsafe=False)
    # Nobody ever applied x: it was on a majority but never committed, and is gone now.
    assert all(b"x" not in c.normal_applied(n) for n in c.nodes)
    assert [c.nodes[n].log.entry(2).kind for n in ("s2", "s3", "s4", "s5")] == [EntryKind.NOOP] * 4


def test_figure8_planted_bug_commits_an_entry_a_future_leader_lacks() -> None:
    c = _figure8(unsafe=True)
    # With the rule broken, s1 counted s1, s2, s3 and committed x (term 1) at index 2 ...
    assert [e.data for e in c.applied["s3"]][:2] == [b"", b"x"]
    # ... yet s5, whose index 2 holds its own term-2 NOOP, gets the votes of s2, s3, s4:
    s5 = c.nodes["s5"].log
    assert s5.entry(2).kind is EntryKind.NOOP
    assert all(
        c.nodes[n].log.is_up_to_date(s5.last_index(), s5.last_term()) for n in ("s2", "s3", "s4")
    )


def test_status_reports_follower_lag() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    c.isolate("c")
    for i in range(7):
        c.propose("a", b"%d" % i)
    st = c.nodes["a"].status()
    assert st.role is Role.LEADER and st.leader == "a" and st.commit == st.last_index == 8
    assert st.lag() == {"b": 0, "c": 7}
    assert c.nodes["b"].status().peers == {}


def test_only_term_vote_entries_or_snapshots_must_be_synced() -> None:
    """A hard state that moved only its commit index is written, not fsynced (etcd's MustSync)."""
    raft = Raft(RaftConfig(node_id="a"), random.Random(1), membership=Membership(("a",)))
    raft.campaign()
    election = raft.ready()
    assert election.hard_state is not None and election.hard_state.term == 1
    assert election.hard_state_must_sync and election.must_sync()
    raft.advance(election)
    while raft.has_ready():  # the new leader's empty entry, then its commit
        raft.advance(raft.ready())
    raft.propose(b"x")
    appended = raft.ready()
    assert appended.entries and appended.must_sync()
    raft.advance(appended)
    committed = raft.ready()  # a single voter commits as soon as its own write is durable
    assert committed.hard_state is not None
    assert committed.hard_state.commit == appended.entries[-1].index
    assert [e.data for e in committed.committed_entries] == [b"x"]
    assert not committed.entries and not committed.hard_state_must_sync
    assert not committed.must_sync() and not committed.is_empty()


def _commit_x_without_a_ready(c: LockstepCluster) -> int:
    """Replicate one entry from leader ``a`` and step both acknowledgements into it,
    stopping before ``a`` builds its next Ready; the entry's index."""
    a = c.nodes["a"]
    index, _ = a.propose(b"x")
    c._handle_ready("a", a)  # persists x and sends it to b and c
    while c.queue:
        c.deliver_one()
    for follower in ("b", "c"):
        c._handle_ready(follower, c.nodes[follower])  # persist, acknowledge
    while c.queue:
        c.deliver_one()  # the acknowledgements reach a: x commits
    assert a.log.committed == index
    return index


def _next_appends(c: LockstepCluster) -> list[AppendEntries]:
    """The AppendEntries of leader ``a``'s next Ready (which is then persisted and sent)."""
    mark = len(c.sent)
    c._handle_ready("a", c.nodes["a"])
    return [m for m in c.sent[mark:] if isinstance(m, AppendEntries)]


def test_a_commit_rides_on_the_entries_proposed_in_the_same_turn() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    index = _commit_x_without_a_ready(c)
    c.nodes["a"].propose(b"y")  # arrives in the same turn as the acknowledgements
    appends = _next_appends(c)
    assert sorted(m.dst for m in appends) == ["b", "c"]  # one each: no commit-only message
    assert all([e.data for e in m.entries] == [b"y"] and m.commit == index for m in appends)
    c.process()
    assert all(c.normal_applied(n) == [b"x", b"y"] for n in c.nodes)


def test_an_idle_commit_still_reaches_the_followers_in_the_next_ready() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    index = _commit_x_without_a_ready(c)
    appends = _next_appends(c)
    assert sorted(m.dst for m in appends) == ["b", "c"]
    assert all(not m.entries and m.commit == index for m in appends)
    c.process()
    assert all(c.normal_applied(n) == [b"x"] for n in c.nodes)


def test_a_follower_that_lost_acknowledged_entries_catches_up_without_a_new_leader() -> None:
    """A disk that drops fsynced writes is outside Raft's fault model (`clob chaos`'s
    torn_wal does it to one follower): the follower then refuses the probe at the index it
    had acknowledged. The leader must probe lower, or the follower is stuck until the
    next election; doing so is safe, as the commit index never goes back."""
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    for i in range(10):
        c.propose("a", b"v%d" % i)
    c.tick(times=2)
    acknowledged = c.nodes["a"].progress["b"].match
    store = c.stores["b"]
    store.entries = [e for e in store.entries if e.index <= acknowledged - 4]  # the lost tail
    c.restart("b")
    for i in range(10, 13):
        c.propose("a", b"v%d" % i)
    c.tick(times=6)
    assert c.stores["b"].entries[-1].index == c.nodes["a"].log.last_index()
    assert c.normal_applied("b")[-3:] == [b"v10", b"v11", b"v12"]
    assert c.nodes["a"].progress["b"].match == c.nodes["a"].log.last_index()

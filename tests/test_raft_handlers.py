"""Each message handler of the consensus core, one node at a time."""

from __future__ import annotations

import random
from typing import Any

from shard.raft import Raft, RaftConfig, Ready, Role
from shard.raft.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)
from shard.records import Entry, EntryKind, HardState, Membership, SnapshotMeta

PEERS = ("a", "b", "c")


def make(node: str = "a", *, entries: list[Entry] | None = None, term: int = 0, **kw: Any) -> Raft:
    hs = HardState(term=term)
    cfg = RaftConfig(node_id=node, **kw)
    return Raft(
        cfg, random.Random(1), membership=Membership(PEERS), hard_state=hs, entries=entries or []
    )


def cycle(r: Raft) -> Ready:
    rd = r.ready()
    r.advance(rd)
    return rd


def sent(r: Raft) -> list[Message]:
    return list(cycle(r).messages) if r.has_ready() else []


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [
        Entry(t, start + i, EntryKind.NORMAL, b"x%d" % (start + i)) for i, t in enumerate(terms)
    ]


def role(r: Raft) -> Role:
    """The node's role, read through a call so each check sees the live value."""
    return r.role


def leader_of_term_1() -> Raft:
    r = make("a")
    r.campaign()
    r.step(VoteResponse("b", "a", 1, True, pre_vote=True))
    assert role(r) is Role.CANDIDATE
    r.step(VoteResponse("b", "a", 1, True))
    assert role(r) is Role.LEADER
    return r


# -- RequestVote ---------------------------------------------------------


def test_vote_granted_to_up_to_date_candidate_and_persisted_before_reply() -> None:
    r = make("b", entries=ents(1, 1), term=1)
    r.step(RequestVote("a", "b", 2, last_index=2, last_term=1))
    rd = cycle(r)
    assert rd.hard_state == HardState(term=2, vote="a", commit=0)
    assert rd.messages == (VoteResponse("b", "a", 2, True),)


def test_vote_refused_to_second_candidate_in_same_term() -> None:
    r = make("b")
    r.step(RequestVote("a", "b", 1, 0, 0))
    cycle(r)
    r.step(RequestVote("c", "b", 1, 0, 0))
    assert sent(r) == [VoteResponse("b", "c", 1, False)]


def test_vote_refused_to_candidate_with_stale_log() -> None:
    r = make("b", entries=ents(1, 2), term=2)
    r.step(RequestVote("a", "b", 3, last_index=5, last_term=1))  # longer but older last term
    assert sent(r) == [VoteResponse("b", "a", 3, False)]
    assert r.vote is None and r.term == 3


# -- PreVote -------------------------------------------------------------


def test_prevote_granted_without_changing_term_or_vote() -> None:
    r = make("b", term=1)
    r.step(RequestVote("a", "b", 2, 0, 0, pre_vote=True))
    assert sent(r) == [VoteResponse("b", "a", 2, True, pre_vote=True)]
    assert (r.term, r.vote) == (1, None)


def test_precandidate_only_bumps_term_after_prevote_quorum() -> None:
    r = make("a", term=4)
    r.campaign()
    assert r.role is Role.PRE_CANDIDATE and r.term == 4
    reqs = sent(r)
    assert {m.dst for m in reqs} == {"b", "c"}
    assert all(isinstance(m, RequestVote) and m.pre_vote and m.term == 5 for m in reqs)
    r.step(VoteResponse("c", "a", 5, True, pre_vote=True))
    assert role(r) is Role.CANDIDATE and r.term == 5 and r.vote == "a"


def test_prevote_ignored_inside_leader_lease() -> None:
    r = make("b", term=1)
    r.step(Heartbeat("a", "b", 1, 0))
    cycle(r)
    r.step(RequestVote("c", "b", 2, 10, 1, pre_vote=True))
    r.step(RequestVote("c", "b", 2, 10, 1))
    assert sent(r) == []
    assert r.term == 1 and r.lead == "a"


def test_prevote_rejection_from_higher_term_makes_precandidate_follow() -> None:
    r = make("a", term=1)
    r.campaign()
    r.step(VoteResponse("b", "a", 7, False, pre_vote=True))
    assert r.role is Role.FOLLOWER and r.term == 7


# -- AppendEntries ---------------------------------------------------------


def test_append_accepted_and_acked_with_last_index() -> None:
    r = make("b", term=1)
    r.step(AppendEntries("a", "b", 1, 0, 0, tuple(ents(1, 1)), commit=1))
    rd = cycle(r)
    assert [e.index for e in rd.entries] == [1, 2]
    assert rd.messages == (AppendResponse("b", "a", 1, True, 2),)
    assert r.log.committed == 1 and r.lead == "a"


def test_append_rejected_with_conflict_hint() -> None:
    r = make("b", entries=ents(1, 1, 2, 2, 2), term=2)
    # Leader of term 4 probes at index 6 (term 3): b's last entries are from term 2.
    r.step(AppendEntries("a", "b", 4, 6, 3, (), commit=0))
    [resp] = sent(r)
    assert resp == AppendResponse("b", "a", 4, False, 6, hint_index=5, hint_term=2)


def test_append_truncates_conflicting_suffix_only() -> None:
    r = make("b", entries=ents(1, 1, 2, 2), term=2)
    new = (Entry(3, 3, EntryKind.NORMAL, b"n3"), Entry(3, 4, EntryKind.NORMAL, b"n4"))
    r.step(AppendEntries("a", "b", 3, 2, 1, new, commit=0))
    rd = cycle(r)
    assert rd.entries == new
    assert [r.log.term(i) for i in range(1, 5)] == [1, 1, 3, 3]


def test_duplicate_old_append_does_not_truncate() -> None:
    r = make("b", term=1)
    r.step(AppendEntries("a", "b", 1, 0, 0, tuple(ents(1, 1, 1)), commit=0))
    cycle(r)
    r.step(AppendEntries("a", "b", 1, 0, 0, tuple(ents(1)), commit=0))  # stale, reordered
    [resp] = sent(r)
    assert r.log.last_index() == 3
    assert resp == AppendResponse("b", "a", 1, True, 1)


def test_stale_leader_is_told_the_new_term() -> None:
    r = make("b", term=5)
    r.step(AppendEntries("a", "b", 3, 0, 0, (), commit=0))
    assert sent(r) == [AppendResponse("b", "a", 5, False, 0)]


# -- AppendResponse (leader side) ----------------------------------------


def test_leader_does_not_count_itself_before_persisting() -> None:
    r = make("a", pre_vote=False)
    r.campaign()
    r.step(VoteResponse("b", "a", 1, True))
    assert r.role is Role.LEADER
    rd = r.ready()  # handed out, not advanced: the NOOP is not durable on a
    r.step(AppendResponse("b", "a", 1, True, 1))
    # b is one of three; a's own copy is not durable: no majority yet.
    assert r.log.committed == 0
    r.advance(rd)
    assert r.log.committed == 1


def test_fast_backtracking_skips_whole_conflicting_term() -> None:
    # Leader log: terms 1,1,1,4,4,4,4 then its NOOP (term 5).
    r = make("a", entries=ents(1, 1, 1, 4, 4, 4, 4), term=4, pre_vote=False)
    r.campaign()
    r.step(VoteResponse("b", "a", 5, True))
    cycle(r)
    # The follower has 1,1,1,2,2,2,2,2,2 and rejects prev=(7, term 4): hint (7, term 2).
    r.step(AppendResponse("b", "a", 5, False, 7, hint_index=7, hint_term=2))
    [probe] = [m for m in sent(r) if m.dst == "b"]
    assert isinstance(probe, AppendEntries)
    assert probe.prev_index == 3 and probe.prev_term == 1  # straight past all of term 4


def test_probe_becomes_replicate_and_pipelines_within_window() -> None:
    r = make("a", pre_vote=False, max_msg_entries=1, max_inflight=2)
    r.campaign()
    r.step(VoteResponse("b", "a", 1, True))
    cycle(r)
    for i in range(5):
        r.propose(b"p%d" % i)
    cycle(r)
    r.step(AppendResponse("b", "a", 1, True, 1))
    out = [m for m in sent(r) if m.dst == "b" and isinstance(m, AppendEntries) and m.entries]
    assert [m.entries[0].index for m in out] == [2, 3]  # two in flight, one entry each
    r.step(AppendResponse("b", "a", 1, True, 2))
    out = [m for m in sent(r) if m.dst == "b" and isinstance(m, AppendEntries) and m.entries]
    assert [m.entries[0].index for m in out] == [4]


# -- Heartbeat -------------------------------------------------------------


def test_heartbeat_advances_commit_and_is_answered_with_context() -> None:
    r = make("b", entries=ents(1, 1), term=1)
    r.step(Heartbeat("a", "b", 1, commit=2, context=b"r1"))
    rd = cycle(r)
    assert r.log.committed == 2 and rd.hard_state is not None and rd.hard_state.commit == 2
    assert rd.messages == (HeartbeatResponse("b", "a", 1, b"r1"),)


def test_leader_heartbeat_response_resends_to_lagging_follower() -> None:
    r = leader_of_term_1()
    cycle(r)
    r.step(HeartbeatResponse("c", "a", 1))
    assert any(isinstance(m, AppendEntries) and m.dst == "c" for m in sent(r))


# -- InstallSnapshot -------------------------------------------------------


def test_snapshot_chunks_assembled_in_order_then_installed() -> None:
    r = make("c", entries=ents(1), term=1)
    meta = SnapshotMeta(10, 2, Membership(PEERS))
    r.step(InstallSnapshot("a", "c", 2, meta, 0, b"abc", done=False))
    assert sent(r) == [SnapshotResponse("c", "a", 2, 10, 3, False)]
    r.step(InstallSnapshot("a", "c", 2, meta, 5, b"zz", done=True))  # gap: asks for 3
    assert sent(r) == [SnapshotResponse("c", "a", 2, 10, 3, False)]
    r.step(InstallSnapshot("a", "c", 2, meta, 3, b"def", done=True))
    rd = cycle(r)
    assert rd.snapshot is not None and rd.snapshot.data == b"abcdef"
    assert rd.messages == (SnapshotResponse("c", "a", 2, 10, 6, True),)
    assert (r.log.snap_index, r.log.last_index(), r.log.committed) == (10, 10, 10)


def test_snapshot_behind_commit_is_acknowledged_without_install() -> None:
    r = make("c", entries=ents(1, 1, 1), term=1)
    r.step(Heartbeat("a", "c", 1, commit=3))
    cycle(r)
    r.step(InstallSnapshot("a", "c", 1, SnapshotMeta(2, 1, Membership(PEERS)), 0, b"s", True))
    rd = cycle(r)
    assert rd.snapshot is None
    assert rd.messages == (SnapshotResponse("c", "a", 1, 2, 1, True),)


# -- TimeoutNow ------------------------------------------------------------


def test_timeout_now_starts_a_real_election_at_once() -> None:
    r = make("b", term=3)
    r.step(Heartbeat("a", "b", 3, 0))
    cycle(r)
    r.step(TimeoutNow("a", "b", 3))
    assert r.role is Role.CANDIDATE and r.term == 4
    votes = [m for m in sent(r) if isinstance(m, RequestVote)]
    assert votes and all(m.transfer and not m.pre_vote for m in votes)


def test_transfer_vote_overrides_lease() -> None:
    r = make("c", term=3)
    r.step(Heartbeat("a", "c", 3, 0))
    cycle(r)
    r.step(RequestVote("b", "c", 4, 0, 0, transfer=True))
    assert sent(r) == [VoteResponse("c", "b", 4, True)]


# -- ReadIndex ---------------------------------------------------------------


def test_read_index_waits_for_noop_commit_then_heartbeat_quorum() -> None:
    r = leader_of_term_1()
    cycle(r)
    r.read_index(b"q1")
    assert sent(r) == []  # the NOOP of term 1 is not committed yet
    r.step(AppendResponse("b", "a", 1, True, 1))
    hbs = [m for m in sent(r) if isinstance(m, Heartbeat) and m.context == b"q1"]
    assert {m.dst for m in hbs} == {"b", "c"}
    r.step(HeartbeatResponse("c", "a", 1, b"q1"))
    rd = cycle(r)
    assert [(s.context, s.index) for s in rd.read_states] == [(b"q1", 1)]


def test_follower_forwards_read_and_leader_answers_it() -> None:
    f = make("b", term=1)
    f.step(Heartbeat("a", "b", 1, 0))
    cycle(f)
    f.read_index(b"b:1")
    assert sent(f) == [ReadIndexRequest("b", "a", 1, b"b:1")]
    r = leader_of_term_1()
    r.step(AppendResponse("b", "a", 1, True, 1))
    cycle(r)
    r.step(ReadIndexRequest("b", "a", 1, b"b:1"))
    cycle(r)
    r.step(HeartbeatResponse("c", "a", 1, b"b:1"))
    assert ReadIndexResponse("a", "b", 1, b"b:1", 1) in sent(r)
    f.step(ReadIndexResponse("a", "b", 1, b"b:1", 1))
    assert [(s.context, s.index) for s in cycle(f).read_states] == [(b"b:1", 1)]


def test_only_a_leader_with_durable_term_may_send_before_persisting() -> None:
    r = make("a", pre_vote=False)
    r.campaign()
    r.step(VoteResponse("b", "a", 1, True))
    first = cycle(r)  # carries the new term and vote: must be durable before sending
    assert first.hard_state is not None and not first.send_before_persist
    r.step(AppendResponse("b", "a", 1, True, 1))  # b now streams (replicate state)
    cycle(r)
    r.propose(b"x")
    later = cycle(r)
    assert later.entries and later.messages and later.send_before_persist
    f = make("b")
    f.step(AppendEntries("a", "b", 1, 0, 0, tuple(ents(1)), commit=0))
    assert not cycle(f).send_before_persist  # an acknowledgement waits for the disk


def test_on_persisted_reports_durability_before_advance() -> None:
    r = make("a", pre_vote=False)
    r.campaign()
    r.step(VoteResponse("b", "a", 1, True))
    rd = r.ready()
    r.step(AppendResponse("b", "a", 1, True, 1))
    assert r.log.committed == 0
    r.on_persisted(rd.entries[-1].index, rd.entries[-1].term)  # storage finished early
    assert r.log.committed == 1
    r.advance(rd)  # reporting it again is harmless
    assert r.log.committed == 1 and r.has_ready()


def test_on_persisted_ignores_entries_that_were_replaced() -> None:
    r = make("b", entries=ents(1), term=1)
    r.step(AppendEntries("a", "b", 1, 1, 1, tuple(ents(1, 1, start=2)), commit=1))
    rd = r.ready()
    # A new leader truncates index 3 before the write of the old one completes.
    r.step(AppendEntries("c", "b", 2, 2, 1, (Entry(2, 3, EntryKind.NORMAL, b"new"),), commit=1))
    r.advance(rd)  # durability of (3, term 1) says nothing about (3, term 2)
    assert r.log.stable == 2
    assert [e.term for e in cycle(r).entries] == [2]

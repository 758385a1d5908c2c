"""Log compaction, chunked InstallSnapshot, and restarting from storage."""

from __future__ import annotations

from shard.raft import RaftConfig
from shard.raft.messages import InstallSnapshot
from shard.records import EntryKind
from shard.sim.lockstep import LockstepCluster


def state(c: LockstepCluster, node: str) -> bytes:
    """The toy state machine of these tests: the concatenation of applied payloads."""
    st = c.stores[node]
    base = st.snapshot.data if st.snapshot else b""
    return base + b"".join(e.data for e in c.applied[node] if e.kind is EntryKind.NORMAL)


def test_compaction_drops_entries_and_keeps_the_snapshot() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    for i in range(10):
        c.propose("a", b"%d," % i)
    a = c.nodes["a"]
    snap = a.compact(a.log.applied, state(c, "a"), retain=2)
    assert snap is not None and snap.meta.index == a.log.applied
    assert snap.meta.membership.voters == ("a", "b", "c")
    assert a.log.snap_index == a.log.applied - 2
    assert a.compact(a.log.applied - 1, b"older") is None  # not newer: ignored


def test_follower_too_far_behind_gets_the_snapshot_in_chunks() -> None:
    c = LockstepCluster(
        ["a", "b", "c"], make_config=lambda n: RaftConfig(node_id=n, snapshot_chunk_bytes=7)
    )
    c.elect("a")
    c.isolate("c")
    for i in range(20):
        c.propose("a", b"%d," % i)
    a = c.nodes["a"]
    data = state(c, "a")
    snap = a.compact(a.log.applied, data)
    assert snap is not None
    c.stores["a"].snapshot = snap
    c.applied["a"] = []
    c.sent.clear()
    c.heal()
    c.tick(times=3)
    chunks = [m for m in c.sent if isinstance(m, InstallSnapshot) and m.dst == "c"]
    assert len(chunks) == -(-len(data) // 7)
    assert [m.offset for m in chunks] == list(range(0, len(data), 7))
    assert c.stores["c"].snapshot is not None and c.stores["c"].snapshot.data == data
    assert c.nodes["c"].log.snap_index == snap.meta.index
    c.propose("a", b"after")
    assert state(c, "c") == state(c, "a") == data + b"after"


def test_lost_snapshot_chunk_is_retransmitted() -> None:
    c = LockstepCluster(
        ["a", "b", "c"], make_config=lambda n: RaftConfig(node_id=n, snapshot_chunk_bytes=4)
    )
    c.elect("a")
    c.isolate("c")
    for i in range(8):
        c.propose("a", b"%d," % i)
    a = c.nodes["a"]
    snap = a.compact(a.log.applied, state(c, "a"))
    assert snap is not None
    c.heal()
    dropped: list[int] = []

    def drop_second_chunk(m: object) -> bool:
        if isinstance(m, InstallSnapshot) and m.offset == 4 and not dropped:
            dropped.append(m.offset)
            return False
        return True

    c.intercept = drop_second_chunk
    c.tick(times=12)
    assert dropped == [4]
    assert c.stores["c"].snapshot is not None and c.stores["c"].snapshot.data == snap.data


def test_restart_recovers_term_vote_log_and_commit() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    for i in range(5):
        c.propose("a", b"%d" % i)
    c.tick(times=2)
    before = c.nodes["b"]
    after = c.restart("b")
    assert (after.term, after.vote, after.log.committed) == (
        before.term,
        before.vote,
        before.log.committed,
    )
    assert after.log.last_index() == before.log.last_index()
    c.tick(times=2)
    assert c.normal_applied("b") == [b"%d" % i for i in range(5)]


def test_restart_from_snapshot_plus_tail() -> None:
    c = LockstepCluster(["a", "b", "c"])
    c.elect("a")
    for i in range(6):
        c.propose("a", b"%d" % i)
    c.tick(times=2)
    b = c.nodes["b"]
    snap = b.compact(b.log.applied - 2, b"state-at-snapshot")
    assert snap is not None
    c.stores["b"].snapshot = snap
    restarted = c.restart("b")
    assert restarted.log.snap_index == snap.meta.index
    assert restarted.log.last_index() == b.log.last_index()
    c.tick(times=2)
    # Only the entries after the snapshot are re-applied.
    assert [e.index for e in c.applied["b"]] == list(
        range(snap.meta.index + 1, b.log.last_index() + 1)
    )

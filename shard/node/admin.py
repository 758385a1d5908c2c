"""A replica's answers to ``status`` and ``admin`` requests (``clob admin`` uses them).

Actions: ``transfer_leader`` (``target``), ``add_replica`` (``node``, as a
non-voting learner), ``promote_replica`` (``node``, refused until the
learner has caught up), ``remove_replica`` (``node``) and ``snapshot``
(checkpoint now: snapshot to disk and digest, on the replica asked).
Membership actions go to the leader and take effect once in its log; the
reply carries the log index of the change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shard.node import protocol
from shard.raft import (
    ChangeKind,
    InvalidChange,
    MembershipChange,
    NotLeader,
    ProposalDropped,
    Raft,
    Role,
)
from shard.storage import StorageError

if TYPE_CHECKING:
    from shard.node.runtime import Replica

_CHANGES = {
    "add_replica": ChangeKind.ADD_LEARNER,
    "promote_replica": ChangeKind.PROMOTE,
    "remove_replica": ChangeKind.REMOVE,
}


async def run_admin(replica: Replica, request: protocol.Message) -> protocol.Message:
    """Carry out one admin request; an ``ok`` reply or an error reply."""
    action = request.get("action")
    raft = replica.raft
    if raft is None or replica.failure is not None:
        return protocol.error(protocol.UNAVAILABLE, replica.failure or "replica is starting")
    if action == "snapshot":
        try:
            checkpoint = await replica.snapshot_now()
        except StorageError as exc:
            return protocol.error(protocol.UNAVAILABLE, str(exc))
        return {
            "t": "ok",
            "index": checkpoint.index,
            "seq": checkpoint.seq,
            "digest": checkpoint.digest,
        }
    node = request.get("target") if action == "transfer_leader" else request.get("node")
    if not isinstance(node, str) or node not in replica.client_addresses:
        return protocol.error(
            protocol.BAD_REQUEST, f"{node!r} is not a replica of {replica.market.name}"
        )
    try:
        if action == "transfer_leader":
            raft.transfer_leader(node)
            replica.wake()
            return {"t": "ok", "target": node}
        index, term = raft.propose_membership(MembershipChange(_CHANGES[str(action)], node))
    except NotLeader as exc:
        return replica.not_leader_error(exc.leader)
    except ProposalDropped as exc:
        return protocol.error(protocol.UNAVAILABLE, str(exc))
    except InvalidChange as exc:
        return protocol.error(protocol.BAD_REQUEST, str(exc))
    replica.wake()
    replica.log.info("membership change proposed", action=action, node=node, index=index)
    return {"t": "ok", "index": index, "term": term}


def replica_status(replica: Replica) -> protocol.Message:
    """Everything ``clob admin status`` shows about one replica."""
    raft = replica.raft
    assert raft is not None
    latest = replica.digests.latest
    return {
        "t": "status",
        "name": replica.name,
        "market": replica.market.name,
        "role": replica.current_role(),
        "term": raft.term,
        "leader": replica.leader,
        "leader_addr": replica.client_addresses.get(replica.leader or ""),
        "commit_index": raft.log.committed,
        "applied_index": replica.rsm.applied_index,
        "last_index": raft.log.last_index(),
        "applied_seq": replica.rsm.seq,
        "digest": latest.digest if latest else None,
        "digest_seq": latest.seq if latest else 0,
        "digest_index": latest.index if latest else 0,
        "digests_agreed": replica.digests.agreed,
        "lag": follower_lag(raft),
        "diverged": replica.diverged,
        "failure": replica.failure,
        "voters": list(raft.membership.voters),
        "learners": list(raft.membership.learners),
        "snapshot_index": replica.last_snapshot_index,
        "peers": {n: s.connected for n, s in replica.transport.statistics().items()},
    }


def follower_lag(raft: Raft) -> dict[str, int]:
    """Leader only: entries each follower is behind the leader's last index."""
    if raft.role is not Role.LEADER:
        return {}
    last = raft.log.last_index()
    return {n: last - pr.match for n, pr in raft.progress.items() if n != raft.id}

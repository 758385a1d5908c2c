"""What the core asks its owner to do: the :class:`Ready` batch.

Rule (the owner must follow it in this order):

1. Persist ``snapshot`` (if any; an installed snapshot replaces the *whole*
   stored log), then ``entries`` (which replace any stored entries at or
   after ``entries[0].index``), then ``hard_state`` (if not None), and make
   them durable (fsync) when :meth:`Ready.must_sync` says so. A crash
   part-way may keep any prefix of these writes, in this order. A hard state
   whose only change is the commit index is written but need not be synced
   (etcd's ``MustSync``): the commit index is volatile in Raft (§5.3, a node
   relearns it from the leader), recovery never trusts it beyond the
   recovered log, and the next sync makes it durable anyway. That keeps a
   second fsync off every command's path (leader: append, then commit).
2. Only then send ``messages``. A vote or an append acknowledgement must never
   leave before the state it promises is on disk. Exception: when
   ``send_before_persist`` is True (a leader whose term and vote are already
   durable) the messages may be sent before or during the write.
3. Restore the state machine from ``snapshot`` (if any), then apply
   ``committed_entries`` in order; serve each of ``read_states`` once the
   applied index reaches its ``index``.
4. Call ``Raft.advance(ready)``.

The leader counts its own log towards a commit quorum only once ``advance``
(or ``on_persisted``) reports the entries durable, so the ordering above is
what keeps a leader from committing an entry that only lives in memory.
"""

from __future__ import annotations

import enum

import attrs

from shard.raft.messages import Message
from shard.records import Entry, HardState, SnapshotMeta


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@attrs.frozen
class SoftState:
    """Volatile facts the owner may want to report (never persisted)."""

    role: Role
    leader: str | None
    term: int


@attrs.frozen
class ReadState:
    """A linearizable read that may be served once applied index >= ``index``."""

    context: bytes
    index: int


@attrs.frozen
class Snapshot:
    """A complete snapshot: where it sits in the log and the owner's opaque bytes."""

    meta: SnapshotMeta
    data: bytes


@attrs.frozen
class Ready:
    """One batch of work for the owner (see the module docstring for the order)."""

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    messages: tuple[Message, ...]
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    soft_state: SoftState | None  # None if unchanged since the previous Ready
    # True when every message is a leader's traffic in a term whose vote is already
    # durable: the owner may then send them *while* persisting (thesis §10.2.1);
    # the leader counts its own entries only once they are reported durable.
    send_before_persist: bool = False
    # False when ``hard_state`` differs from the previous one only in its commit index
    hard_state_must_sync: bool = True

    def must_sync(self) -> bool:
        """Whether this Ready carries anything that has to be made durable before step 2."""
        return (
            bool(self.entries)
            or self.snapshot is not None
            or (self.hard_state is not None and self.hard_state_must_sync)
        )

    def is_empty(self) -> bool:
        return not (
            self.must_sync()
            or self.hard_state is not None
            or self.messages
            or self.committed_entries
            or self.read_states
            or self.soft_state is not None
        )


@attrs.frozen
class PeerStatus:
    """The leader's view of one follower."""

    match: int
    next: int
    state: str  # "probe" | "replicate" | "snapshot"
    recent_active: bool


@attrs.frozen
class Status:
    """A consistent picture of one node, for monitoring (``Raft.status()``)."""

    node_id: str
    role: Role
    term: int
    leader: str | None
    commit: int
    applied: int
    last_index: int
    snapshot_index: int
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    peers: dict[str, PeerStatus]  # leader only, every member but the leader itself

    def lag(self) -> dict[str, int]:
        """Entries each follower is behind the leader's log (leader only)."""
        return {n: self.last_index - p.match for n, p in self.peers.items()}

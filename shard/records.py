"""Durable records shared by the consensus core, storage and snapshots.

These are the values that outlive a process: log entries, the hard state
(term, vote, commit) and snapshot metadata. Node ids are the replica names
from the topology file (strings such as ``"btc-usd-1"``).
"""

from __future__ import annotations

import enum

import attrs


class EntryKind(enum.IntEnum):
    """What a log entry carries; the numeric values are part of the WAL format."""

    NORMAL = 0  # a batch of client proposals (see shard.proposals)
    CONFIG = 1  # a single-server membership change (thesis ch. 4)
    NOOP = 2  # appended by a new leader to commit entries of older terms (paper §5.4.2)


@attrs.frozen
class Entry:
    """One Raft log entry."""

    term: int
    index: int
    kind: EntryKind
    data: bytes


@attrs.frozen
class HardState:
    """State that must be on disk before any message depending on it is sent."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@attrs.frozen
class Membership:
    """The voting members and non-voting learners of a replica group."""

    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()

    def all_nodes(self) -> tuple[str, ...]:
        return self.voters + self.learners


@attrs.frozen
class SnapshotMeta:
    """Where a snapshot sits in the log and the membership in force there."""

    index: int
    term: int
    membership: Membership

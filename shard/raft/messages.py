"""Messages Raft peers exchange, one frozen class per kind.

Every message carries the sender ``src``, the receiver ``dst`` and the sender's
``term``. The owner of the core moves them between nodes unchanged; their wire
encoding lives in :mod:`shard.raft.codec`.
"""

from __future__ import annotations

import attrs

from shard.records import Entry, SnapshotMeta


@attrs.frozen
class RequestVote:
    """A (pre-)candidate asks for a vote (thesis §3.4, PreVote §9.6).

    For a pre-vote ``term`` is the term the sender *would* campaign in; nobody
    changes term because of it. ``transfer`` marks a campaign started by a
    leadership transfer, which voters honour even inside a leader lease.
    """

    src: str
    dst: str
    term: int
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False


@attrs.frozen
class VoteResponse:
    src: str
    dst: str
    term: int
    granted: bool
    pre_vote: bool = False


@attrs.frozen
class AppendEntries:
    """Entries following ``(prev_index, prev_term)`` and the leader's commit index."""

    src: str
    dst: str
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@attrs.frozen
class AppendResponse:
    """Reply to :class:`AppendEntries`.

    On success ``index`` is the last index now known to match the leader. On
    rejection ``index`` echoes the rejected ``prev_index`` and
    ``(hint_index, hint_term)`` is the follower's best guess of the last entry
    that could match: the leader skips a whole conflicting term at once.
    """

    src: str
    dst: str
    term: int
    success: bool
    index: int
    hint_index: int = 0
    hint_term: int = 0


@attrs.frozen
class Heartbeat:
    """Leader liveness plus commit; ``context`` is a ReadIndex round being confirmed."""

    src: str
    dst: str
    term: int
    commit: int
    context: bytes = b""


@attrs.frozen
class HeartbeatResponse:
    src: str
    dst: str
    term: int
    context: bytes = b""


@attrs.frozen
class InstallSnapshot:
    """One chunk of the leader's snapshot; ``offset`` is where ``data`` starts."""

    src: str
    dst: str
    term: int
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@attrs.frozen
class SnapshotResponse:
    """``next_offset`` is the byte the follower expects next (or total size when done).

    ``done`` is true once the whole snapshot is installed; ``index`` is the
    snapshot's last index.
    """

    src: str
    dst: str
    term: int
    index: int
    next_offset: int
    done: bool


@attrs.frozen
class TimeoutNow:
    """Leadership transfer: the receiver campaigns at once (thesis §3.10)."""

    src: str
    dst: str
    term: int


@attrs.frozen
class ReadIndexRequest:
    """A follower forwards a linearizable read to the leader (thesis §6.4)."""

    src: str
    dst: str
    term: int
    context: bytes


@attrs.frozen
class ReadIndexResponse:
    """The leader's answer: serve ``context`` once applied index >= ``index``."""

    src: str
    dst: str
    term: int
    context: bytes
    index: int


Message = (
    RequestVote
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | SnapshotResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)

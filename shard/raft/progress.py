"""What the leader knows about each follower's log, and its flow control.

A follower is in one of three states (as in etcd's tracker):

* ``PROBE``: we do not know where its log matches ours; send one
  AppendEntries at a time and wait for the answer (or the next heartbeat).
* ``REPLICATE``: its log matches up to ``match``; stream AppendEntries
  optimistically (``next`` jumps ahead on send), bounded by :class:`Inflights`.
* ``SNAPSHOT``: it is too far behind our compacted log; a snapshot is being
  sent in chunks, one chunk in flight at a time.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """A bounded window of AppendEntries in flight: by message count and by bytes."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, int]] = deque()  # (last index, bytes)
        self._bytes = 0

    def add(self, last_index: int, size: int) -> None:
        self._items.append((last_index, size))
        self._bytes += size

    def free_le(self, index: int) -> None:
        """Forget every message whose last index is acknowledged."""
        while self._items and self._items[0][0] <= index:
            self._bytes -= self._items.popleft()[1]

    def free_first_one(self) -> None:
        """Make room for one message (a heartbeat answer shows the peer is alive)."""
        if self._items:
            self._bytes -= self._items.popleft()[1]

    def reset(self) -> None:
        self._items.clear()
        self._bytes = 0

    def full(self) -> bool:
        return len(self._items) >= self.max_count or self._bytes >= self.max_bytes

    def __len__(self) -> int:
        return len(self._items)


class Progress:
    """The leader's view of one peer (voter or learner)."""

    def __init__(self, next_index: int, *, max_inflight: int, max_inflight_bytes: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False  # in PROBE: one message is out, wait before sending another
        self.recent_active = False  # heard from it since the last CheckQuorum round
        self.inflights = Inflights(max_inflight, max_inflight_bytes)
        self.snapshot_index = 0  # in SNAPSHOT: index of the snapshot being sent
        self.snapshot_offset = 0  # in SNAPSHOT: next byte to send
        self.snapshot_idle = 0  # ticks since the last chunk, for retransmission
        self.commit_sent = 0  # the highest commit index an AppendEntries to it carried

    def __repr__(self) -> str:
        return f"Progress({self.state.value} match={self.match} next={self.next})"

    def become_probe(self) -> None:
        # Coming back from a snapshot, resume right after it.
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflights.reset()
        self.snapshot_index = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot_index = index
        self.snapshot_offset = 0
        self.snapshot_idle = 0
        self.probe_sent = False
        self.inflights.reset()

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True  # SNAPSHOT chunks are driven separately

    def maybe_update(self, index: int) -> bool:
        """A successful append response up to ``index``; True if ``match`` advanced."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int, size: int) -> None:
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index, size)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decrease(self, rejected: int, hint_next: int) -> bool:
        """A rejection of the message with ``prev_index == rejected``; False if stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # an old, reordered rejection
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # answers a probe we have already moved past
        if rejected <= self.match and hint_next <= self.match:
            # It refused the entry at ``match``, which it had acknowledged: it lost part of
            # its log (a disk that dropped fsynced writes, outside Raft's fault model), or
            # this is an old answer overtaken by its acknowledgement. Probing at ``match``
            # would be refused for ever, so probe where it says its log ends. Safe either
            # way: ``match`` only feeds the commit rule, and the commit index never goes
            # back (an old answer just costs one more round trip).
            self.match = hint_next - 1
        self.next = max(min(rejected, hint_next), self.match + 1, 1)
        self.probe_sent = False
        return True

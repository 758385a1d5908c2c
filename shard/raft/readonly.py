"""Pending linearizable reads on the leader (ReadIndex, thesis §6.4).

A read is recorded with the leader's commit index at the time it arrived.
The leader then sends a heartbeat round carrying the read's context; once a
majority of voters has answered that round the leader knows it was still the
leader when the read arrived, so the read (and every read queued before it)
may be served as soon as the replica serving it has applied that index.
"""

from __future__ import annotations

from collections import deque

import attrs


@attrs.define
class PendingRead:
    context: bytes
    index: int
    origin: str  # node that asked: the leader itself or a follower that forwarded it
    acks: set[str] = attrs.field(factory=set)


class ReadOnly:
    """FIFO of reads awaiting leadership confirmation; contexts must be unique."""

    def __init__(self) -> None:
        self._pending: dict[bytes, PendingRead] = {}
        self._queue: deque[bytes] = deque()

    def add(self, context: bytes, index: int, origin: str, self_id: str) -> bool:
        """Queue a read; False if a read with this context is already pending."""
        if context in self._pending:
            return False
        self._pending[context] = PendingRead(context, index, origin, {self_id})
        self._queue.append(context)
        return True

    def ack(self, context: bytes, voter: str) -> set[str] | None:
        """Record a heartbeat answer for ``context``; the ack set, or None if unknown."""
        read = self._pending.get(context)
        if read is None:
            return None
        read.acks.add(voter)
        return read.acks

    def release(self, context: bytes) -> list[PendingRead]:
        """Remove and return every read queued up to and including ``context``."""
        if context not in self._pending:
            return []
        out: list[PendingRead] = []
        while self._queue:
            ctx = self._queue.popleft()
            out.append(self._pending.pop(ctx))
            if ctx == context:
                break
        return out

    def last_context(self) -> bytes | None:
        return self._queue[-1] if self._queue else None

    def reset(self) -> list[PendingRead]:
        """Drop everything (leadership lost); returns the dropped reads."""
        dropped = [self._pending[c] for c in self._queue]
        self._pending.clear()
        self._queue.clear()
        return dropped

    def __len__(self) -> int:
        return len(self._queue)

"""Recently applied commands, kept for subscribers: a bounded ring plus live fan-out.

A replica keeps the last ``capacity`` applied commands ``(seq, events,
level_changes)`` in memory. A subscriber asking for a seq still in the ring
gets the backlog and then every new item; one asking for an older seq gets
``gone`` (it must resync from a query). After a snapshot install the ring
restarts and every subscriber is told ``gone``: the replica skipped items.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any

from shard.node import protocol
from shard.node.clientserver import Reply, Subscriber
from shard.node.framing import Encoded, encode_frame

Item = list[Any]  # [seq, events, level_changes], exactly as sent on the wire
_BACKLOG_CHUNK = 1024  # items per pushed message while sending a backlog


class AppliedRing:
    """The ring and the set of live subscribers of one replica."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._items: deque[Item] = deque(maxlen=capacity)
        self.last_seq = 0  # seq of the newest applied command
        self._subscribers: dict[int, Subscriber] = {}

    def reset(self, last_seq: int) -> None:
        """State jumped to ``last_seq`` (snapshot installed): drop the ring and subscribers."""
        self._items.clear()
        self.last_seq = last_seq
        gone = protocol.error(protocol.GONE, f"replica installed a snapshot at seq {last_seq}")
        for subscriber in self._subscribers.values():
            subscriber.push(dict(gone))
        self._subscribers.clear()

    def oldest_seq(self) -> int:
        """The oldest seq a subscriber may still ask for."""
        return self._items[0][0] if self._items else self.last_seq + 1

    def subscribe(self, from_seq: int, subscriber: Subscriber, reply: Reply) -> None:
        if from_seq < 1:
            reply(protocol.error(protocol.BAD_REQUEST, "from_seq starts at 1"))
            return
        if from_seq < self.oldest_seq():
            reply(
                protocol.error(
                    protocol.GONE,
                    f"seq {from_seq} is no longer kept (oldest kept is {self.oldest_seq()})",
                )
            )
            return
        reply({"t": "ok"})
        if self._items and from_seq <= self.last_seq:
            start = from_seq - self._items[0][0]
            backlog = islice(self._items, start, None)
            while chunk := list(islice(backlog, _BACKLOG_CHUNK)):
                subscriber.push({"t": "applied", "items": chunk})
        self._subscribers[id(subscriber)] = subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.pop(id(subscriber), None)

    def publish(self, items: list[Item]) -> None:
        """Record newly applied commands (consecutive seqs) and push them to subscribers."""
        if not items:
            return
        assert items[0][0] == self.last_seq + 1, (items[0][0], self.last_seq)
        self._items.extend(items)
        self.last_seq = items[-1][0]
        if self._subscribers:
            # Packed once here rather than by each subscriber's connection.
            frame = Encoded(encode_frame({"t": "applied", "items": items}))
            for subscriber in list(self._subscribers.values()):
                subscriber.push(frame)

    def subscriber_count(self) -> int:
        return len(self._subscribers)

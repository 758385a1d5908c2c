"""A connection's bounded outgoing queue and its slow-consumer rule."""

from __future__ import annotations

import collections

import trio


class Outbox:
    """Frames waiting to be written to one client: at most ``limit`` of them, and at most
    ``limit_chars`` characters together.

    :meth:`push` never blocks, so neither the market-data fan-out nor request
    handling ever waits for a slow client. The push that finds the queue full
    drops everything queued and marks the outbox overflowed: :meth:`get_many` then
    returns None, the sender tells the client it was too slow and the
    connection is closed (PROTOCOL.md: a client may not grow our memory). The
    size bound matters as much as the count: a client that resubscribed to a
    deep book without reading had 4,096 full snapshots queued, 350 MB.
    """

    def __init__(self, limit: int, limit_chars: int = 1 << 62) -> None:
        assert limit >= 1 and limit_chars >= 1
        self.limit = limit
        self.limit_chars = limit_chars
        self.overflowed = False
        self._queue: collections.deque[str] = collections.deque()
        self._chars = 0  # characters queued (a str is held as at least that many bytes)
        self._ready = trio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, message: str) -> bool:
        """Queue ``message``; False if the outbox is (or just became) overflowed."""
        if self.overflowed:
            return False
        chars = self._chars + len(message)
        if len(self._queue) >= self.limit or (chars > self.limit_chars and self._queue):
            self.overflowed = True
            self._queue.clear()
            self._chars = 0
            self._ready.set()
            return False
        self._queue.append(message)
        self._chars = chars
        self._ready.set()
        return True

    async def get_many(self, most: int) -> list[str] | None:
        """Every frame queued (at most ``most``), waiting for one; None once overflowed."""
        queue = self._queue
        while not queue and not self.overflowed:
            self._ready = trio.Event()
            await self._ready.wait()
        if self.overflowed:
            return None
        if len(queue) <= most:
            frames = list(queue)
            queue.clear()
            self._chars = 0
            return frames
        frames = [queue.popleft() for _ in range(most)]
        self._chars -= sum(map(len, frames))
        return frames

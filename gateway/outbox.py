"""A connection's bounded outgoing queue and its slow-consumer rule."""

from __future__ import annotations

import collections

import trio


class Outbox:
    """Frames waiting to be written to one client, at most ``limit`` of them.

    :meth:`push` never blocks, so neither the market-data fan-out nor request
    handling ever waits for a slow client. The push that finds the queue full
    drops everything queued and marks the outbox overflowed: :meth:`get` then
    returns None, the sender tells the client it was too slow and the
    connection is closed (PROTOCOL.md: a client may not grow our memory).
    """

    def __init__(self, limit: int) -> None:
        assert limit >= 1
        self.limit = limit
        self.overflowed = False
        self._queue: collections.deque[str] = collections.deque()
        self._ready = trio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, message: str) -> bool:
        """Queue ``message``; False if the outbox is (or just became) overflowed."""
        if self.overflowed:
            return False
        if len(self._queue) >= self.limit:
            self.overflowed = True
            self._queue.clear()
            self._ready.set()
            return False
        self._queue.append(message)
        self._ready.set()
        return True

    async def get(self) -> str | None:
        """The next frame to send, waiting for one; None once overflowed."""
        while not self._queue and not self.overflowed:
            self._ready = trio.Event()
            await self._ready.wait()
        if self.overflowed:
            return None
        return self._queue.popleft()

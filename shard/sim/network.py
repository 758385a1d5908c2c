"""A simulated network: delay, reordering, loss, duplication and partitions.

Every decision draws from the simulation's single ``random.Random``, so a
seed replays the same deliveries. Links are directed: ``block(a, b)`` cuts
a -> b only (an asymmetric partition); a message already in flight is also
dropped if its link is cut when it would arrive.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable

import attrs

from shard.raft.messages import Message


@attrs.define
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0


class SimNetwork:
    def __init__(
        self,
        rng: random.Random,
        *,
        min_delay: int = 1,
        max_delay: int = 3,
        loss: float = 0.0,
        duplicate: float = 0.0,
        long_delay: float = 0.0,
    ) -> None:
        self.rng = rng
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.loss = loss
        self.duplicate = duplicate
        self.long_delay = long_delay  # chance of a delay of several election timeouts
        self.blocked: set[tuple[str, str]] = set()
        self.stats = NetworkStats()
        self._heap: list[tuple[int, int, Message]] = []
        self._counter = 0

    def _delay(self) -> int:
        if self.long_delay and self.rng.random() < self.long_delay:
            return self.rng.randrange(10, 40)
        return self.rng.randint(self.min_delay, self.max_delay)

    def send(self, m: Message, now: int) -> None:
        self.stats.sent += 1
        if (m.src, m.dst) in self.blocked or (self.loss and self.rng.random() < self.loss):
            self.stats.dropped += 1
            return
        copies = 1
        if self.duplicate and self.rng.random() < self.duplicate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            self._counter += 1
            # The random tiebreak reorders messages that arrive in the same tick.
            key = self._counter + self.rng.randrange(1_000_000) * 1_000_000
            heapq.heappush(self._heap, (now + self._delay(), key, m))

    def due(self, now: int) -> list[Message]:
        out: list[Message] = []
        while self._heap and self._heap[0][0] <= now:
            m = heapq.heappop(self._heap)[2]
            if (m.src, m.dst) in self.blocked:
                self.stats.dropped += 1
                continue
            self.stats.delivered += 1
            out.append(m)
        return out

    def in_flight(self) -> int:
        return len(self._heap)

    # -- partitions ------------------------------------------------------

    def block(self, src: str, dst: str) -> None:
        self.blocked.add((src, dst))

    def isolate(self, node: str, others: Iterable[str]) -> None:
        for o in others:
            if o != node:
                self.blocked |= {(node, o), (o, node)}

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        b = list(side_b)
        for x in side_a:
            for y in b:
                self.blocked |= {(x, y), (y, x)}

    def heal(self) -> None:
        self.blocked.clear()

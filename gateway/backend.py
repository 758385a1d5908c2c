"""What the gateway needs from a market: the :class:`MarketBackend` protocol.

``shard.node.client.ShardClient`` (one per replica group) satisfies it; so
does :class:`LocalBackend`, an in-process engine for fast gateway tests and
``clob up --local-engine``. The gateway never talks to a market any other way.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
import trio

from shard.engineapp import EngineApplication
from shard.node.api import (
    AppliedItem,
    CommandResult,
    LevelChange,
    NodeStatus,
    ShardError,
    SubscriptionGone,
    Unavailable,
)


class AppliedStream(Protocol):
    """An open subscription: async-iterate it, close it with ``aclose``."""

    def __aiter__(self) -> AppliedStream: ...

    def __anext__(self) -> Awaitable[AppliedItem]: ...

    def aclose(self) -> Awaitable[None]: ...


class MarketBackend(Protocol):
    """One market's replica group as the gateway sees it."""

    async def submit(self, command: dict[str, Any]) -> CommandResult:
        """Apply a command through the log; returns after commit and apply."""
        ...

    async def submit_ordered(
        self,
        commands: list[dict[str, Any]],
        report: Callable[[int, CommandResult | ShardError], None],
    ) -> None:
        """Apply ``commands`` in this order, each at most once; ``report(i, outcome)`` each
        outcome as soon as it is known, in order (a command reported as failed is never
        applied after a later one of the batch)."""
        ...

    async def query(self, command: dict[str, Any]) -> CommandResult:
        """Run a query linearizably (it reflects every command acknowledged before it)."""
        ...

    def subscribe(self, from_seq: int) -> AppliedStream:
        """Every applied command from ``from_seq`` on, in seq order, without end.

        Raises :class:`SubscriptionGone` (when iterated) if ``from_seq`` is no longer kept."""
        ...

    async def status(self) -> list[NodeStatus]:
        """Each replica's view of the group."""
        ...


class LocalBackend:
    """One market's engine in this process: commands are applied one at a time, in call order.

    The engine runs inside the replicas' :class:`EngineApplication`, so results,
    level changes and trade times are what a replica group gives. It keeps the
    last ``history`` applied items for :meth:`subscribe` (older ones raise
    :class:`SubscriptionGone`, as a replica would). Tests can make the next
    calls fail with :meth:`fail_next` to exercise error handling.
    """

    def __init__(
        self, market: str, tick_size: str, lot_size: str, *, history: int = 10_000
    ) -> None:
        self.market = market
        self._app = EngineApplication()
        self._seq = 0
        self._history: collections.deque[AppliedItem] = collections.deque(maxlen=history)
        self._applied = trio.Event()
        self._failures: collections.deque[BaseException] = collections.deque()
        self.generation = 0  # bumped by drop_subscriptions
        self._apply(
            {
                "type": "create_market",
                "market": market,
                "tick_size": tick_size,
                "lot_size": lot_size,
            }
        )

    @property
    def seq(self) -> int:
        return self._seq

    def drop_subscriptions(self) -> None:
        """Make every open subscription fail, as when its replica dies (for tests)."""
        self.generation += 1
        self._applied.set()
        self._applied = trio.Event()

    def fail_next(self, exc: BaseException, times: int = 1) -> None:
        """Make the next ``times`` submit/query calls raise ``exc`` (for tests)."""
        self._failures.extend([exc] * times)

    def _apply(self, command: dict[str, Any]) -> CommandResult:
        self._seq += 1
        self._app.stamp(_stamp())
        rows, level_changes = self._app.apply(self._seq, orjson.dumps(command))
        changes: list[LevelChange] = list(level_changes)
        self._history.append(AppliedItem(self._seq, rows, changes))
        self._applied.set()
        self._applied = trio.Event()
        return CommandResult(self._seq, rows)

    async def submit(self, command: dict[str, Any]) -> CommandResult:
        await trio.lowlevel.checkpoint()
        if self._failures:
            raise self._failures.popleft()
        return self._apply(command)

    async def submit_ordered(
        self,
        commands: list[dict[str, Any]],
        report: Callable[[int, CommandResult | ShardError], None],
    ) -> None:
        await trio.lowlevel.checkpoint()
        for i, command in enumerate(commands):
            if self._failures:
                failure = self._failures.popleft()
                if not isinstance(failure, ShardError):
                    raise failure
                report(i, failure)
            else:
                report(i, self._apply(command))

    async def query(self, command: dict[str, Any]) -> CommandResult:
        await trio.lowlevel.checkpoint()
        if self._failures:
            raise self._failures.popleft()
        return CommandResult(self._seq, self._app.query(command, self._seq))

    def subscribe(self, from_seq: int) -> LocalSubscription:
        return LocalSubscription(self, from_seq)

    def item_at(self, seq: int) -> AppliedItem | None:
        """The applied item ``seq`` if it happened already; raises if no longer kept."""
        oldest = self._history[0].seq if self._history else self._seq + 1
        if seq < oldest:
            raise SubscriptionGone(f"seq {seq} is older than the oldest kept, {oldest}")
        return self._history[seq - oldest] if seq <= self._seq else None

    async def wait_applied(self) -> None:
        """Wait until the next command is applied."""
        await self._applied.wait()

    async def status(self) -> list[NodeStatus]:
        await trio.lowlevel.checkpoint()
        return [
            NodeStatus(
                name=f"local-{self.market}",
                reachable=True,
                role="leader",
                leader=f"local-{self.market}",
                commit_index=self._seq,
                applied_index=self._seq,
                applied_seq=self._seq,
            )
        ]


class _StampClock:
    """The time of a command applied now (µs): strictly increasing across the process's
    markets, so commands applied one after another in two markets keep their order even
    within one microsecond (replica groups are never that close: see shard.tradetimes)."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last = max(time.time_ns() // 1000, self.last + 1)
        return self.last


_stamp = _StampClock()  # one for every LocalBackend of the process


class LocalSubscription:
    """A :class:`LocalBackend`'s applied items from a seq on (an :class:`AppliedStream`)."""

    def __init__(self, backend: LocalBackend, from_seq: int) -> None:
        self._backend = backend
        self._next = from_seq
        self._closed = False
        self._generation = backend.generation

    def __aiter__(self) -> LocalSubscription:
        return self

    async def __anext__(self) -> AppliedItem:
        while not self._closed:
            if self._generation != self._backend.generation:
                raise Unavailable("the subscription's replica went away")
            item = self._backend.item_at(self._next)
            if item is not None:
                self._next += 1
                await trio.lowlevel.checkpoint()
                return item
            await self._backend.wait_applied()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._closed = True

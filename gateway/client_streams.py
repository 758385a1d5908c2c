"""The client library's stream views: book with gap detection, trades, user events.

Each stream gets its messages from the connection's reader through a bounded
queue. When that queue overflows (the application is not keeping up) or a
book update's ``prev_seq`` is not the seq of the message before it, the
stream has a gap: a book stream then resubscribes by itself and ignores
updates until the fresh snapshot arrives; trade and user streams count the
gap and flag the next item (their history cannot be replayed from a stream;
``orders``/``fills`` queries are the way to catch up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Self

import attrs
import trio

Message = dict[str, Any]


@attrs.frozen
class BookView:
    """The aggregated book as of ``seq``, best levels first."""

    market: str
    seq: int
    bids: tuple[tuple[str, str], ...]
    asks: tuple[tuple[str, str], ...]

    def best_bid(self) -> tuple[str, str] | None:
        return self.bids[0] if self.bids else None

    def best_ask(self) -> tuple[str, str] | None:
        return self.asks[0] if self.asks else None


class LocalBook:
    """A book rebuilt from snapshot and update messages (sans-I/O; tests feed it directly).

    :meth:`apply` returns False when a message does not chain on the previous
    one (``prev_seq`` differs from the last seq seen), i.e. something was
    missed; the book is then stale until the next snapshot.
    """

    def __init__(self, market: str) -> None:
        self.market = market
        self.seq: int | None = None  # None: waiting for a snapshot
        self._bids: dict[Decimal, tuple[str, str]] = {}
        self._asks: dict[Decimal, tuple[str, str]] = {}

    @property
    def ready(self) -> bool:
        return self.seq is not None

    def apply(self, message: Message) -> bool:
        kind = message.get("type")
        if kind == "snapshot":
            self._bids = {Decimal(p): (p, q) for p, q in message["bids"]}
            self._asks = {Decimal(p): (p, q) for p, q in message["asks"]}
            self.seq = message["seq"]
            return True
        if kind != "update" or self.seq is None:
            return self.seq is not None
        if message["prev_seq"] != self.seq:
            self.seq = None
            return False
        for side, price, qty in message["changes"]:
            levels = self._bids if side == "buy" else self._asks
            key = Decimal(price)
            if Decimal(qty) == 0:
                levels.pop(key, None)
            else:
                levels[key] = (price, qty)
        self.seq = message["seq"]
        return True

    def view(self) -> BookView:
        assert self.seq is not None
        bids = tuple(self._bids[k] for k in sorted(self._bids, reverse=True))
        asks = tuple(self._asks[k] for k in sorted(self._asks))
        return BookView(self.market, self.seq, bids, asks)


class StreamQueue:
    """Messages for one stream; overflow drops them and records a gap."""

    def __init__(self, size: int) -> None:
        self._send, self._receive = trio.open_memory_channel[Message](size)
        self.overflowed = False

    def put(self, message: Message) -> None:
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.overflowed = True

    async def get(self) -> Message:
        return await self._receive.receive()

    def close(self) -> None:
        self._send.close()


Resubscribe = Callable[[], Awaitable[None]]
Detach = Callable[[], Awaitable[None]]


class _Stream:
    def __init__(self, queue: StreamQueue, resubscribe: Resubscribe, detach: Detach) -> None:
        self._queue = queue
        self._resubscribe = resubscribe
        self._detach = detach
        self.gaps = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unsubscribe (if the connection is still open) and stop the stream."""
        await self._detach()

    def __aiter__(self) -> Self:
        return self

    async def _next(self) -> Message:
        try:
            return await self._queue.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class BookStream(_Stream):
    """Async iterator of :class:`BookView`, one per applied snapshot or update.

    Resubscribes by itself when it detects a gap; ``resyncs`` counts that.
    """

    def __init__(
        self, market: str, queue: StreamQueue, resubscribe: Resubscribe, detach: Detach
    ) -> None:
        super().__init__(queue, resubscribe, detach)
        self.market = market
        self.book = LocalBook(market)
        self.resyncs = 0
        self._awaiting_snapshot = False

    async def __anext__(self) -> BookView:
        while True:
            if self._queue.overflowed:
                self._queue.overflowed = False
                await self._resync()
            message = await self._next()
            if self._awaiting_snapshot and message.get("type") != "snapshot":
                continue
            if self.book.apply(message):
                self._awaiting_snapshot = False
                if self.book.ready:
                    return self.book.view()
            else:
                await self._resync()

    async def _resync(self) -> None:
        self.gaps += 1
        self.resyncs += 1
        self.book.seq = None
        self._awaiting_snapshot = True
        await self._resubscribe()


@attrs.frozen
class Trade:
    market: str
    seq: int
    trade_id: int
    price: str
    qty: str
    taker_side: str
    after_gap: bool = False  # trades were missed just before this one


class TradeStream(_Stream):
    """Async iterator of :class:`Trade`; trade ids are consecutive per market, so a jump
    (or a local overflow) is a gap, counted in ``gaps`` and flagged on the next trade."""

    def __init__(
        self, market: str, queue: StreamQueue, resubscribe: Resubscribe, detach: Detach
    ) -> None:
        super().__init__(queue, resubscribe, detach)
        self.market = market
        self._last_trade_id: int | None = None

    async def __anext__(self) -> Trade:
        gap = False
        if self._queue.overflowed:
            self._queue.overflowed = False
            gap = True
        message = await self._next()
        trade_id = message["trade_id"]
        if self._last_trade_id is not None and trade_id != self._last_trade_id + 1:
            gap = True
        self._last_trade_id = trade_id
        if gap:
            self.gaps += 1
        return Trade(
            message["market"],
            message["seq"],
            trade_id,
            message["price"],
            message["qty"],
            message["taker_side"],
            gap,
        )


@attrs.frozen
class UserEvent:
    market: str
    seq: int
    event: dict[str, Any]
    after_gap: bool = False


class UserStream(_Stream):
    """Async iterator of the caller's own events (:class:`UserEvent`), seq-ordered per market."""

    def __init__(self, queue: StreamQueue, resubscribe: Resubscribe, detach: Detach) -> None:
        super().__init__(queue, resubscribe, detach)
        self._last_seq: dict[str, int] = {}

    async def __anext__(self) -> UserEvent:
        gap = False
        if self._queue.overflowed:
            self._queue.overflowed = False
            gap = True
        message = await self._next()
        market, seq = message["market"], message["seq"]
        if seq < self._last_seq.get(market, 0):
            gap = True  # out of order: cannot happen unless the gateway misbehaves
        self._last_seq[market] = seq
        if gap:
            self.gaps += 1
        return UserEvent(market, seq, message["event"], gap)

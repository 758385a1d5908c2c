"""Market data fan-out: one upstream subscription per market, many client streams.

A :class:`MarketFeed` follows one market's applied commands (the backend's
``subscribe``), keeps the aggregated book built from each item's level
changes, and pushes to its subscribers:

* ``book``: a snapshot (the whole book at the feed's seq) when a client
  subscribes, then one ``update`` per applied command that changed a level,
  each with ``prev_seq`` = the seq of the previous message sent to that client;
* ``trades``: one message per ``fill`` event;
* ``user``: each event that concerns the subscriber's user, fills redacted.

Pushing never blocks: a subscriber is a :class:`Sink` with its own bounded
queue that applies the slow-consumer rule itself. When the upstream is lost
the feed reconnects from the next seq; when the replica no longer has that
seq (``SubscriptionGone``) it re-reads the book and sends book subscribers one
``update`` holding the difference, so their seq chain stays unbroken (trade
and user messages in that window are not recovered; docs/protocol.md).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

import trio
from sortedcontainers import SortedDict

from gateway import metrics
from gateway.backend import MarketBackend
from gateway.privacy import redact, users_of
from gateway.wire import encode
from shard.node.api import AppliedItem, ShardError, SubscriptionGone
from shard.observability import get_logger

FULL_DEPTH = 1_000_000  # "every level" for the engine's book query


class Sink(Protocol):
    """A client connection's outgoing queue, as the feed sees it."""

    def push(self, message: str) -> None:
        """Queue a message without blocking (the sink handles overflow)."""
        ...


class Book:
    """Aggregated price levels of one side, keyed by decimal value (text kept as given)."""

    def __init__(self, descending: bool) -> None:
        self._levels: SortedDict = SortedDict((lambda d: -d) if descending else None)

    def set(self, price: str, qty: str) -> None:
        key = Decimal(price)
        if Decimal(qty) == 0:
            self._levels.pop(key, None)
        else:
            self._levels[key] = (price, qty)

    def levels(self) -> list[list[str]]:
        return [[p, q] for p, q in self._levels.values()]

    def as_map(self) -> dict[Decimal, str]:
        return {k: q for k, (_, q) in self._levels.items()}

    def items(self) -> list[tuple[Decimal, tuple[str, str]]]:
        return list(self._levels.items())


class MarketFeed:
    """One market's stream state and subscribers; :meth:`run` owns the upstream subscription."""

    def __init__(
        self,
        market: str,
        backend: MarketBackend,
        *,
        gateway: str = "gw",
    ) -> None:
        self.market = market
        self.backend = backend
        self.seq = 0
        self.synced = False  # the book has been loaded once
        self.healthy = False  # the upstream subscription works now
        self.bids = Book(descending=True)
        self.asks = Book(descending=False)
        self._book_subs: dict[Sink, int | None] = {}  # sink -> seq of the last message it got
        self._trade_subs: set[Sink] = set()
        self._user_subs: dict[str, set[Sink]] = {}
        # the encoded snapshot at one seq, shared by every subscriber that asks for it
        # then: each one used to get its own copy (a resubscribe flood queued thousands)
        self._snapshot: tuple[int, str] | None = None
        self._log = get_logger("gateway.marketdata", market=market, gateway=gateway)

    # -- subscribers ---------------------------------------------------------------------------

    def add_book(self, sink: Sink) -> None:
        """Subscribe (or resubscribe) ``sink`` to the book: it gets a snapshot now, or on sync."""
        self._book_subs[sink] = None
        if self.synced:
            self._send_snapshot(sink)

    def add_trades(self, sink: Sink) -> None:
        self._trade_subs.add(sink)

    def add_user(self, sink: Sink, user: str) -> None:
        self._user_subs.setdefault(user, set()).add(sink)

    def remove_book(self, sink: Sink) -> None:
        self._book_subs.pop(sink, None)

    def remove_trades(self, sink: Sink) -> None:
        self._trade_subs.discard(sink)

    def remove_user(self, sink: Sink, user: str) -> None:
        sinks = self._user_subs.get(user)
        if sinks is not None:
            sinks.discard(sink)
            if not sinks:
                del self._user_subs[user]

    def remove_all(self, sink: Sink) -> None:
        self.remove_book(sink)
        self.remove_trades(sink)
        for user in list(self._user_subs):
            self.remove_user(sink, user)

    def subscriber_count(self) -> int:
        return (
            len(self._book_subs) + len(self._trade_subs) + sum(map(len, self._user_subs.values()))
        )

    # -- upstream --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the market forever (until cancelled), reconnecting with backoff."""
        task_status.started()
        backoff = 0.05
        need_book = True
        while True:
            try:
                if need_book:
                    await self._load_book()
                    need_book = False
                stream = self.backend.subscribe(self.seq + 1)
                self.healthy = True
                try:
                    async for item in stream:
                        self.apply(item)
                        backoff = 0.05
                finally:
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
                self._log.warning("upstream subscription ended", seq=self.seq)
            except SubscriptionGone:
                self._log.warning(
                    "upstream no longer has our seq; reloading the book", seq=self.seq
                )
                need_book = True
            except (ShardError, OSError, trio.BrokenResourceError) as exc:
                self._log.warning("upstream subscription failed", seq=self.seq, error=repr(exc))
            except Exception as exc:  # a bug or a malformed item: never take the gateway down
                self._log.error("feed failed; reloading the book", seq=self.seq, exc_info=exc)
                need_book = True
            self.healthy = False
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _load_book(self) -> None:
        result = await self.backend.query(
            {"type": "book", "market": self.market, "depth": FULL_DEPTH}
        )
        event = result.events[0]
        if event.get("type") != "book":
            raise ShardError(f"book query for {self.market} answered {event!r}")
        old_bids, old_asks = self.bids.as_map(), self.asks.as_map()
        self.bids, self.asks = Book(descending=True), Book(descending=False)
        self._snapshot = None
        for price, qty in event["bids"]:
            self.bids.set(price, qty)
        for price, qty in event["asks"]:
            self.asks.set(price, qty)
        seq = int(event["seq"])
        if self.synced:
            changes = _diff("buy", old_bids, self.bids) + _diff("sell", old_asks, self.asks)
            self.seq = max(self.seq, seq)
            if changes:
                self._send_update(changes)
        else:
            self.seq = seq
            self.synced = True
            self._log.info("feed synced", seq=seq)
            for sink, last in list(self._book_subs.items()):
                if last is None:
                    self._send_snapshot(sink)

    def apply(self, item: AppliedItem) -> None:
        """Apply one upstream item and fan it out (items at or below our seq are skipped)."""
        if item.seq <= self.seq:
            return
        self.seq = item.seq
        changes: list[list[str]] = []
        for market, side, price, qty in item.level_changes:
            if market != self.market:
                continue
            (self.bids if side == "buy" else self.asks).set(price, qty)
            changes.append([side, price, qty])
        if changes:
            self._snapshot = None
            self._send_update(changes)
        for event in item.events:
            if event.get("type") == "fill" and self._trade_subs:
                self._send_trade(item.seq, event)
            for user in users_of(event):
                sinks = self._user_subs.get(user)
                if sinks:
                    message = encode(
                        {
                            "channel": "user",
                            "market": self.market,
                            "type": "event",
                            "seq": item.seq,
                            "event": redact(event, user),
                        }
                    )
                    for sink in list(sinks):
                        sink.push(message)
                    metrics.streamed("user", len(sinks))

    # -- messages --------------------------------------------------------------------------------

    def _send_snapshot(self, sink: Sink) -> None:
        cached = self._snapshot
        if cached is None or cached[0] != self.seq:
            message = {
                "channel": "book",
                "market": self.market,
                "type": "snapshot",
                "seq": self.seq,
                "bids": self.bids.levels(),
                "asks": self.asks.levels(),
            }
            cached = self._snapshot = (self.seq, encode(message))
        self._book_subs[sink] = self.seq
        sink.push(cached[1])
        metrics.streamed("book")

    def _send_update(self, changes: list[list[str]]) -> None:
        encoded: dict[int, str] = {}  # prev_seq -> message: subscribers mostly share one
        for sink, last in list(self._book_subs.items()):
            if last is None:
                continue  # waiting for its snapshot
            message = encoded.get(last)
            if message is None:
                message = encoded[last] = encode(
                    {
                        "channel": "book",
                        "market": self.market,
                        "type": "update",
                        "seq": self.seq,
                        "prev_seq": last,
                        "changes": changes,
                    }
                )
            self._book_subs[sink] = self.seq
            sink.push(message)
            metrics.streamed("book")

    def _send_trade(self, seq: int, fill: dict[str, Any]) -> None:
        message = encode(
            {
                "channel": "trades",
                "market": self.market,
                "type": "trade",
                "seq": seq,
                "trade_id": fill["trade_id"],
                "price": fill["price"],
                "qty": fill["qty"],
                "taker_side": fill["taker_side"],
            }
        )
        for sink in list(self._trade_subs):
            sink.push(message)
        metrics.streamed("trades", len(self._trade_subs))


def _diff(side: str, old: dict[Decimal, str], new: Book) -> list[list[str]]:
    now = new.as_map()
    changes = [[side, str(price), "0"] for price in old if price not in now]
    for price, (text, qty) in new.items():
        if old.get(price) != qty:
            changes.append([side, text, qty])
    return changes

"""The multi-market engine: dispatch of commands and queries, snapshots.

``Engine.execute`` takes any decoded JSON value and never raises on bad
input: a refused command yields one ``rejected`` event and changes nothing.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from clob import codec, snapshot
from clob.book import BookSide
from clob.decimals import Step
from clob.events import (
    BAD_COMMAND,
    INVALID_PRICE,
    INVALID_QTY,
    MARKET_EXISTS,
    UNKNOWN_ORDER,
    BookResult,
    Event,
    Fill,
    FillsResult,
    MarketCreated,
    OrderRow,
    OrdersResult,
    Reject,
    Rejected,
)
from clob.market import NO_LIVE_ORDER, FillRow, Market
from clob.parse import (
    Command,
    parse_amend,
    parse_book,
    parse_cancel,
    parse_create_market,
    parse_fills,
    parse_new_order,
    parse_user_and_market,
)

Handler = Callable[[Command, int, list[Event]], None]


def _row_trade_id(row: FillRow) -> int:
    trade_id: int = row[1]
    return trade_id


def _seq(fill: Fill) -> int:
    return fill.seq


class Engine:
    """Deterministic state machine over every market of a replica group."""

    def __init__(self) -> None:
        self.markets: dict[str, Market] = {}
        self._by_name: list[Market] = []  # self.markets' values in name order
        # new_order, cancel and amend, the most frequent, are dispatched inline by execute
        self._handlers: dict[str, Handler] = {
            "create_market": self._create_market,
            "cancel_all": self._cancel_all,
            "orders": self._orders,
            "fills": self._fills,
            "book": self._book,
        }

    # ------------------------------------------------------------- public API

    def execute(self, command: object, seq: int) -> list[Event]:
        """Apply one command (or answer one query) and return its events."""
        if not isinstance(command, dict):
            return [Rejected(seq, BAD_COMMAND, "a command must be a JSON object")]
        kind = command.get("type")
        out: list[Event] = []
        try:
            if type(kind) is not str:
                raise Reject(BAD_COMMAND, "'type' is missing or not a known command")
            if kind == "new_order":
                market, user, coid, is_buy, price, qty, tif, post_only, stp = parse_new_order(
                    command, self.markets
                )
                market.new_order(seq, user, coid, is_buy, price, qty, tif, post_only, stp, out)
            elif kind == "cancel":
                market, user, order_id, coid = parse_cancel(command, self.markets)
                if not market.cancel_order(seq, user, order_id, coid, out):
                    return [_rejection(command, seq, UNKNOWN_ORDER, NO_LIVE_ORDER)]
            elif kind == "amend":
                market, user, order_id, coid, new_price, new_qty = parse_amend(
                    command, self.markets
                )
                market.amend(seq, market.find(user, order_id, coid), new_price, new_qty, out)
            else:
                handler = self._handlers.get(kind)
                if handler is None:
                    raise Reject(BAD_COMMAND, "'type' is missing or not a known command")
                handler(command, seq, out)
        except Reject as refusal:
            return [_rejection(command, seq, refusal.reason, refusal.message)]
        return out

    def encode(self, event: Event) -> dict[str, Any]:
        """The JSON-ready dict of one of this engine's events."""
        return codec.encode(event, self.markets)

    def take_level_changes(self) -> list[tuple[str, str, str, str]]:
        """Aggregated levels changed since the last call: (market, side, price, total).

        Markets in name order, bids then asks, prices in the order they were
        first touched; total "0" means the level is gone. The replica calls
        this after every command, so the common case (nothing or one level
        touched) is kept cheap.
        """
        changes: list[tuple[str, str, str, str]] = []
        for market in self._markets_by_name(None):
            bids = market.bids
            if bids.touched or bids.folded:
                _level_changes(market, bids, "buy", changes)
            asks = market.asks
            if asks.touched or asks.folded:
                _level_changes(market, asks, "sell", changes)
        return changes

    def market_specs(self) -> list[tuple[str, str, str]]:
        """``(market, tick_size, lot_size)`` of every market, by name."""
        return [
            (name, self.markets[name].tick.text, self.markets[name].lot.text)
            for name in sorted(self.markets)
        ]

    def snapshot(self) -> bytes:
        """The whole engine state as versioned, deterministic bytes."""
        return snapshot.dump(self.markets)

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        """An engine in exactly the state that produced ``data``."""
        engine = cls()
        snapshot.load(data, engine.markets)
        return engine

    def digest(self) -> bytes:
        """A hash of the state: equal states give equal digests."""
        return snapshot.digest(self.snapshot())

    # --------------------------------------------------------------- commands

    def _create_market(self, cmd: Command, seq: int, out: list[Event]) -> None:
        name, tick_text, lot_text = parse_create_market(cmd)
        if name in self.markets:
            raise Reject(MARKET_EXISTS, f"market {name!r} already exists")
        lot = Step.parse(lot_text)
        if lot is None:
            raise Reject(INVALID_QTY, "lot_size must be positive")
        tick = Step.parse(tick_text)
        if tick is None:
            raise Reject(INVALID_PRICE, "tick_size must be positive")
        self.markets[name] = Market(name, tick, lot)
        out.append(MarketCreated(seq, name, tick.text, lot.text))

    def _cancel_all(self, cmd: Command, seq: int, out: list[Event]) -> None:
        user, only = parse_user_and_market(cmd, self.markets)
        for market in self._markets_by_name(only):
            market.cancel_all(seq, user, out)

    # ---------------------------------------------------------------- queries

    def _orders(self, cmd: Command, seq: int, out: list[Event]) -> None:
        user, only = parse_user_and_market(cmd, self.markets)
        rows: list[OrderRow] = []
        for market in self._markets_by_name(only):
            rows += market.order_rows(user)
        out.append(OrdersResult(seq, user, tuple(rows)))

    def _fills(self, cmd: Command, seq: int, out: list[Event]) -> None:
        user, market, after, limit = parse_fills(cmd, self.markets)
        if market is None:
            # one command trades in one market only, so seq orders fills across markets
            histories = [m.fill_events(user) for m in self._markets_by_name(None)]
            merged = heapq.merge(*histories, key=_seq)
            out.append(FillsResult(seq, user, tuple(itertools.islice(merged, limit)), None))
            return
        history = market.user_fills.get(user, [])
        start = 0 if after is None else bisect.bisect_right(history, after, key=_row_trade_id)
        page = [market.fill_event(row) for row in history[start : start + limit]]
        more = start + limit < len(history)
        out.append(FillsResult(seq, user, tuple(page), page[-1].trade_id if more else None))

    def _book(self, cmd: Command, seq: int, out: list[Event]) -> None:
        market, depth = parse_book(cmd, self.markets)
        out.append(BookResult(seq, market.name, market.bids.depth(depth), market.asks.depth(depth)))

    def _markets_by_name(self, only: Market | None) -> list[Market]:
        if only is not None:
            return [only]
        # markets are only ever added (create_market, restore): re-sort on growth
        if len(self._by_name) != len(self.markets):
            self._by_name = [self.markets[name] for name in sorted(self.markets)]
        return self._by_name


def _level_changes(
    market: Market, side: BookSide, side_name: str, changes: list[tuple[str, str, str, str]]
) -> None:
    """Append one side's touched levels with their current totals (and reset them)."""
    levels = side.levels
    name, tick, lot = market.name, market.tick, market.lot
    for price in side.take_touched():
        level = levels.get(price)
        total = 0 if level is None else level.total
        changes.append((name, side_name, tick.text_of(price), lot.text_of(total)))


# Integers JSON encoders (orjson) can write; a larger echoed id is left out.
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


def _rejection(cmd: dict[Any, Any], seq: int, reason: str, message: str) -> Rejected:
    """The ``rejected`` event, echoing the command's well-typed identifying fields.

    An ``order_id`` outside the 64-bit range (possible from Python callers or
    lenient JSON decoders) is not echoed, so every event stays encodable.
    """
    market = cmd.get("market")
    user = cmd.get("user")
    coid = cmd.get("client_order_id")
    order_id = cmd.get("order_id")
    fields = (
        seq,
        reason,
        message,
        market if type(market) is str else None,
        user if type(user) is str else None,
        coid if type(coid) is str else None,
        order_id if type(order_id) is int and _INT64_MIN <= order_id <= _UINT64_MAX else None,
    )
    return Rejected(*fields)

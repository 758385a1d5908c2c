"""Events the engine emits, and the rejection reasons.

Events are immutable records. They are ``typing.NamedTuple`` classes rather
than frozen attrs classes because the engine creates one or more per command
on its hottest path: on CPython 3.11 a frozen slotted attrs instance with ten
fields costs about 2.0 us to build, a NamedTuple about 0.5 us (measured, see
docs/engine.md). Prices and quantities are integer ticks and lots of the
event's market; :mod:`clob.codec` turns them into decimal strings.
"""

from __future__ import annotations

from typing import Final, NamedTuple

# Builds an event from a tuple of its fields, skipping the NamedTuple's
# Python-level __new__ (3x cheaper on the hot path, compiled or not).
make_event: Final = tuple.__new__

# Rejection reasons, in the order of precedence ENGINE.md gives: when a
# command fails several checks, the first one in this tuple is reported.
BAD_COMMAND: Final = "bad_command"
UNKNOWN_MARKET: Final = "unknown_market"
MARKET_EXISTS: Final = "market_exists"
INVALID_QTY: Final = "invalid_qty"
INVALID_PRICE: Final = "invalid_price"
INVALID_TIF: Final = "invalid_tif"
UNKNOWN_ORDER: Final = "unknown_order"
DUPLICATE_CLIENT_ORDER_ID: Final = "duplicate_client_order_id"
WOULD_TAKE: Final = "would_take"
REJECTION_PRECEDENCE = (
    BAD_COMMAND,
    UNKNOWN_MARKET,
    MARKET_EXISTS,
    INVALID_QTY,
    INVALID_PRICE,
    INVALID_TIF,
    UNKNOWN_ORDER,
    DUPLICATE_CLIENT_ORDER_ID,
    WOULD_TAKE,
)


class MarketCreated(NamedTuple):
    seq: int
    market: str
    tick_size: str
    lot_size: str


class Accepted(NamedTuple):
    seq: int
    market: str
    order_id: int
    user: str
    client_order_id: str | None
    side: str
    order_type: str
    price: int | None  # ticks; None for a market order
    qty: int  # lots
    tif: str
    post_only: bool


class Fill(NamedTuple):
    """One trade. Also kept as the fill history record of both users."""

    seq: int
    market: str
    trade_id: int
    price: int
    qty: int
    taker_order_id: int
    maker_order_id: int
    taker_user: str
    maker_user: str
    taker_side: str
    # Not part of the `fill` event; kept for the `fills` query.
    taker_client_order_id: str | None
    maker_client_order_id: str | None


class Cancelled(NamedTuple):
    seq: int
    market: str
    order_id: int
    user: str
    remaining_qty: int
    reason: str  # "user" | "ioc" | "fok" | "stp" | "cancel_all"


class Amended(NamedTuple):
    seq: int
    market: str
    order_id: int
    user: str
    price: int
    qty: int


class Rejected(NamedTuple):
    """A refused command; the optional fields echo the command (None: absent)."""

    seq: int
    reason: str
    message: str
    market: str | None = None
    user: str | None = None
    client_order_id: str | None = None
    order_id: int | None = None


class OrderRow(NamedTuple):
    """One live order in an `orders` query result, captured at query time."""

    market: str
    order_id: int
    client_order_id: str | None
    side: str
    price: int
    qty: int
    filled_qty: int
    post_only: bool


class OrdersResult(NamedTuple):
    seq: int
    user: str
    orders: tuple[OrderRow, ...]


class FillsResult(NamedTuple):
    seq: int
    user: str
    fills: tuple[Fill, ...]
    next: int | None


class BookResult(NamedTuple):
    seq: int
    market: str
    bids: tuple[tuple[int, int], ...]  # (price ticks, total lots), best first
    asks: tuple[tuple[int, int], ...]


Event = (
    MarketCreated
    | Accepted
    | Fill
    | Cancelled
    | Amended
    | Rejected
    | OrdersResult
    | FillsResult
    | BookResult
)


class Reject(Exception):
    """Raised inside the engine before any state change to refuse a command."""

    def __init__(self, reason: str, message: str) -> None:
        # no super().__init__: BaseException.__new__ already set args to (reason, message)
        self.reason = reason
        self.message = message

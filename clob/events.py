"""Events the engine emits, and the rejection reasons.

Events are immutable records: plain classes whose attributes are ``Final``.
Compiled with mypyc (see docs/engine.md) they become native C structs:
building one is a direct call that stores unboxed ints, and assigning an
attribute from Python raises ``AttributeError``. The engine builds one or
more per command on its hottest path; a ``NamedTuple`` cost about twice as
much there and a frozen attrs or dataclass instance, which mypyc cannot make
native, ten times as much (measured, see docs/engine.md). :class:`Record`
gives them value equality, hashing and a readable ``repr``. Prices and
quantities are integer ticks and lots of the event's market;
:mod:`clob.codec` turns them into decimal strings.
"""

from __future__ import annotations

from typing import ClassVar, Final

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


class Record:
    """Value semantics for the event classes: equality, hashing and ``repr`` by fields.

    Each subclass lists its attributes in ``FIELDS`` (constructor order).
    These methods are for tests, logs and tools; the engine never calls them.
    """

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def values(self) -> tuple[object, ...]:
        """The field values in constructor order."""
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self.values() == other.values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.values()))

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({body})"


class MarketCreated(Record):
    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "market",
        "tick_size",
        "lot_size",
    )
    __slots__ = FIELDS

    def __init__(self, seq: int, market: str, tick_size: str, lot_size: str) -> None:
        self.seq: Final = seq
        self.market: Final = market
        self.tick_size: Final = tick_size
        self.lot_size: Final = lot_size


class Accepted(Record):
    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "market",
        "order_id",
        "user",
        "client_order_id",
        "side",
        "order_type",
        "price",
        "qty",
        "tif",
        "post_only",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        seq: int,
        market: str,
        order_id: int,
        user: str,
        client_order_id: str | None,
        side: str,
        order_type: str,
        price: int | None,
        qty: int,
        tif: str,
        post_only: bool,
    ) -> None:
        self.seq: Final = seq
        self.market: Final = market
        self.order_id: Final = order_id
        self.user: Final = user
        self.client_order_id: Final = client_order_id
        self.side: Final = side
        self.order_type: Final = order_type
        self.price: Final = price
        self.qty: Final = qty
        self.tif: Final = tif
        self.post_only: Final = post_only


class Fill(Record):
    """One trade. Also kept as the fill history record of both users; the two
    client order ids are not part of the ``fill`` event, only of the ``fills`` query."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "market",
        "trade_id",
        "price",
        "qty",
        "taker_order_id",
        "maker_order_id",
        "taker_user",
        "maker_user",
        "taker_side",
        "taker_client_order_id",
        "maker_client_order_id",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        seq: int,
        market: str,
        trade_id: int,
        price: int,
        qty: int,
        taker_order_id: int,
        maker_order_id: int,
        taker_user: str,
        maker_user: str,
        taker_side: str,
        taker_client_order_id: str | None,
        maker_client_order_id: str | None,
    ) -> None:
        self.seq: Final = seq
        self.market: Final = market
        self.trade_id: Final = trade_id
        self.price: Final = price
        self.qty: Final = qty
        self.taker_order_id: Final = taker_order_id
        self.maker_order_id: Final = maker_order_id
        self.taker_user: Final = taker_user
        self.maker_user: Final = maker_user
        self.taker_side: Final = taker_side
        self.taker_client_order_id: Final = taker_client_order_id
        self.maker_client_order_id: Final = maker_client_order_id


class Cancelled(Record):
    """``reason``: "user", "ioc", "fok", "stp" or "cancel_all"."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "market",
        "order_id",
        "user",
        "remaining_qty",
        "reason",
    )
    __slots__ = FIELDS

    def __init__(
        self, seq: int, market: str, order_id: int, user: str, remaining_qty: int, reason: str
    ) -> None:
        self.seq: Final = seq
        self.market: Final = market
        self.order_id: Final = order_id
        self.user: Final = user
        self.remaining_qty: Final = remaining_qty
        self.reason: Final = reason


class Amended(Record):
    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "market",
        "order_id",
        "user",
        "price",
        "qty",
    )
    __slots__ = FIELDS

    def __init__(
        self, seq: int, market: str, order_id: int, user: str, price: int, qty: int
    ) -> None:
        self.seq: Final = seq
        self.market: Final = market
        self.order_id: Final = order_id
        self.user: Final = user
        self.price: Final = price
        self.qty: Final = qty


class Rejected(Record):
    """A refused command; the optional fields echo the command (None: absent)."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "reason",
        "message",
        "market",
        "user",
        "client_order_id",
        "order_id",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        seq: int,
        reason: str,
        message: str,
        market: str | None = None,
        user: str | None = None,
        client_order_id: str | None = None,
        order_id: int | None = None,
    ) -> None:
        self.seq: Final = seq
        self.reason: Final = reason
        self.message: Final = message
        self.market: Final = market
        self.user: Final = user
        self.client_order_id: Final = client_order_id
        self.order_id: Final = order_id


class OrderRow(Record):
    """One live order in an `orders` query result, captured at query time."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "market",
        "order_id",
        "client_order_id",
        "side",
        "price",
        "qty",
        "filled_qty",
        "post_only",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        market: str,
        order_id: int,
        client_order_id: str | None,
        side: str,
        price: int,
        qty: int,
        filled_qty: int,
        post_only: bool,
    ) -> None:
        self.market: Final = market
        self.order_id: Final = order_id
        self.client_order_id: Final = client_order_id
        self.side: Final = side
        self.price: Final = price
        self.qty: Final = qty
        self.filled_qty: Final = filled_qty
        self.post_only: Final = post_only


class OrdersResult(Record):
    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "user",
        "orders",
    )
    __slots__ = FIELDS

    def __init__(self, seq: int, user: str, orders: tuple[OrderRow, ...]) -> None:
        self.seq: Final = seq
        self.user: Final = user
        self.orders: Final = orders


class FillsResult(Record):
    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "user",
        "fills",
        "next",
    )
    __slots__ = FIELDS

    def __init__(self, seq: int, user: str, fills: tuple[Fill, ...], next: int | None) -> None:
        self.seq: Final = seq
        self.user: Final = user
        self.fills: Final = fills
        self.next: Final = next


class BookResult(Record):
    """Aggregated levels ``(price ticks, total lots)``, best first."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "seq",
        "market",
        "bids",
        "asks",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        seq: int,
        market: str,
        bids: tuple[tuple[int, int], ...],
        asks: tuple[tuple[int, int], ...],
    ) -> None:
        self.seq: Final = seq
        self.market: Final = market
        self.bids: Final = bids
        self.asks: Final = asks


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

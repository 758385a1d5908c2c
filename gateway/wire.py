"""Decoding client frames into typed requests, and encoding replies.

One cattrs converter (orjson preconf, ``forbid_extra_keys``) with strict
scalar hooks: a JSON number is never turned into a string or the reverse, so
``"qty": 1`` is a ``bad_request`` rather than a silently fixed order. The
structural checks the engine would report as ``bad_command`` (missing or
ill-typed fields, values outside their lists, text that is not a decimal)
are made here and answered with ``bad_request``; the engine keeps the
business rules (ticks, lots, unknown orders, ...).
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal, NewType

import attrs
import cattrs
import orjson
from cattrs.preconf.orjson import make_converter

from gateway.errors import GatewayError

RequestId = int | str | None
DecimalText = NewType("DecimalText", str)
Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
Tif = Literal["gtc", "ioc", "fok"]
Stp = Literal["cancel_taker", "cancel_maker", "cancel_both"]
ChannelName = Literal["book", "trades", "user"]

# A plain decimal exactly as the engine reads one (clob.decimals): an optional minus
# sign, ASCII digits, at most one point; no plus sign, exponent, space or newline. So
# every malformed decimal is this gateway's bad_request, never the engine's bad_command.
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
MAX_TEXT = 64  # user names and client order ids (ENGINE.md)
# Longest decimal string accepted (the engine's own bound on a value once its padding zeros
# are dropped). Every accepted command is written to each replica's log: an unbounded
# "qty" let one 64 KiB frame put 64 KiB into the log, 300 times a normal command.
MAX_DECIMAL_TEXT = 100
MAX_FILLS_LIMIT = 1000
# Longest request id (a string id is echoed in the reply). Replies wait in a connection's
# outbox (GatewaySettings.outbound_buffer and _chars), so what one reply may hold of the
# client's own text bounds what a client that does not read can make us keep: 64 KiB ids
# made that 256 MiB per connection, without authentication, before the size bound.
MAX_REQUEST_ID_CHARS = 128
# Client text quoted in an error message is cut to this many characters (same reason).
MAX_QUOTED_CHARS = 64
# A book query is answered by the market's leader from its engine, for anyone (no auth
# needed): without a bound one request could make it list every level (100,000 levels
# cost the leader 0.15 s and 1.4 MB per query). The book stream gives the whole book.
MAX_BOOK_DEPTH = 1000


@attrs.frozen
class Auth:
    api_key: str


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Markets:
    pass


@attrs.frozen
class NewOrder:
    market: str
    side: Side
    qty: DecimalText
    order_type: OrderType
    price: DecimalText | None = None
    client_order_id: str | None = None
    tif: Tif | None = None
    post_only: bool | None = None
    stp: Stp | None = None
    user: str | None = None  # tolerated only when it names the caller


@attrs.frozen
class Cancel:
    market: str
    order_id: int | None = None
    client_order_id: str | None = None
    user: str | None = None


@attrs.frozen
class Amend:
    market: str
    order_id: int | None = None
    client_order_id: str | None = None
    price: DecimalText | None = None
    qty: DecimalText | None = None
    user: str | None = None


@attrs.frozen
class CancelAll:
    market: str | None = None
    user: str | None = None


@attrs.frozen
class Orders:
    market: str | None = None
    user: str | None = None


@attrs.frozen
class Fills:
    market: str | None = None
    after: int | None = None
    limit: int | None = None
    user: str | None = None


@attrs.frozen
class Book:
    market: str
    depth: int | None = None


@attrs.frozen
class Channel:
    """A stream: ``book``/``trades`` need a market; ``user`` takes an optional market filter."""

    name: ChannelName
    market: str | None = None
    user: str | None = None  # tolerated on "user" when it names the caller


@attrs.frozen
class Subscribe:
    channels: tuple[Channel, ...]


@attrs.frozen
class Unsubscribe:
    channels: tuple[Channel, ...]


Body = (Auth | Ping | Markets | NewOrder | Cancel | Amend | CancelAll | Orders | Fills | Book) | (
    Subscribe | Unsubscribe
)
COMMANDS: dict[type[Any], str] = {
    NewOrder: "new_order",
    Cancel: "cancel",
    Amend: "amend",
    CancelAll: "cancel_all",
}
QUERIES: dict[type[Any], str] = {Orders: "orders", Fills: "fills", Book: "book"}

OPS: dict[str, type[Any]] = {
    "auth": Auth,
    "ping": Ping,
    "markets": Markets,
    "new_order": NewOrder,
    "cancel": Cancel,
    "amend": Amend,
    "cancel_all": CancelAll,
    "orders": Orders,
    "fills": Fills,
    "book": Book,
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
}


@attrs.frozen
class Request:
    id: RequestId
    op: str
    body: Body


class FrameError(Exception):
    """A frame that cannot become a request; ``id`` is what can be echoed (or None)."""

    def __init__(self, request_id: RequestId, error: GatewayError) -> None:
        super().__init__(error.message)
        self.request_id = request_id
        self.error = error


def quoted(text: str) -> str:
    """``repr`` of client-supplied ``text`` for an error message, cut to a bounded length."""
    if len(text) <= MAX_QUOTED_CHARS:
        return repr(text)
    return repr(text[:MAX_QUOTED_CHARS]) + f"... ({len(text)} characters)"


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_json_type(value)}")
    return value


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_json_type(value)}")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_json_type(value)}")
    return value


def _decimal_text(value: Any, _: type) -> DecimalText:
    if not isinstance(value, str) or _DECIMAL.fullmatch(value) is None:
        raise TypeError(f"expected a decimal number as a string, got {_json_type(value)}")
    if len(value) > MAX_DECIMAL_TEXT:
        raise TypeError(f"expected a decimal number of at most {MAX_DECIMAL_TEXT} characters")
    return DecimalText(value)


def _channels(value: Any, _: type) -> tuple[Channel, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError("expected a non-empty list of channels")
    return tuple(CONVERTER.structure(item, Channel) for item in value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _make_converter() -> cattrs.Converter:
    converter = make_converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(DecimalText, _decimal_text)
    converter.register_structure_hook_func(lambda t: t == tuple[Channel, ...], _channels)
    return converter


CONVERTER = _make_converter()


def _describe(exc: BaseException, type_: Any) -> str:
    if typing.get_origin(type_) is Literal:
        return "must be one of " + ", ".join(repr(a) for a in typing.get_args(type_))
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        extra = sorted(exc.extra_fields)
        shown = ", ".join(quoted(name) for name in extra[:5])
        return (
            "unknown field(s) " + shown + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        )
    if isinstance(exc, AttributeError):
        return "expected an object"
    return str(exc)


def _structure(fields: dict[str, Any], cls: type[Any]) -> Any:
    try:
        return CONVERTER.structure(fields, cls)
    except Exception as exc:  # cattrs reports every problem at once
        problems = cattrs.transform_error(exc, format_exception=_describe)
        raise ValueError("; ".join(problems[:5])) from exc


def decode(frame: str | bytes) -> Request:
    """Turn one text frame into a :class:`Request`; raises :class:`FrameError`."""
    try:
        doc = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise FrameError(None, GatewayError("bad_request", "The frame is not JSON.")) from None
    if not isinstance(doc, dict):
        raise FrameError(None, GatewayError("bad_request", "The frame is not a JSON object."))
    op = doc.get("op")
    if not isinstance(op, str):  # PROTOCOL.md: a frame lacking op is answered with id null
        raise FrameError(None, GatewayError("bad_request", "The request needs an 'op' string."))
    request_id = doc.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        raise FrameError(
            None, GatewayError("bad_request", "The request needs an 'id', a string or an integer.")
        )
    if isinstance(request_id, str) and len(request_id) > MAX_REQUEST_ID_CHARS:
        message = f"The request 'id' is longer than {MAX_REQUEST_ID_CHARS} characters."
        raise FrameError(None, GatewayError("bad_request", message))
    cls = OPS.get(op)
    if cls is None:
        raise FrameError(request_id, GatewayError("bad_request", f"Unknown op {quoted(op)}."))
    fields = {k: v for k, v in doc.items() if k not in ("op", "id")}
    kind = fields.pop("type", op)
    if kind != op:
        raise FrameError(
            request_id, GatewayError("bad_request", "'type' must be absent (or equal to 'op').")
        )
    try:
        body = _structure(fields, cls)
        _check(body)
    except ValueError as exc:
        raise FrameError(request_id, GatewayError("bad_request", f"Invalid {op}: {exc}.")) from None
    return Request(request_id, op, body)


def _check(body: Body) -> None:
    """Cross-field rules that the types alone do not express."""
    coid = getattr(body, "client_order_id", None)
    if coid is not None and len(coid) > MAX_TEXT:
        raise ValueError(f"client_order_id is longer than {MAX_TEXT} characters")
    if isinstance(body, Cancel | Amend) and (body.order_id is None) == (
        body.client_order_id is None
    ):
        raise ValueError("give exactly one of order_id and client_order_id")
    if isinstance(body, NewOrder) and body.order_type == "limit" and body.price is None:
        raise ValueError("a limit order needs a price")
    if isinstance(body, Amend) and body.price is None and body.qty is None:
        raise ValueError("give price, qty or both")
    if isinstance(body, Fills):
        if body.limit is not None and not 1 <= body.limit <= MAX_FILLS_LIMIT:
            raise ValueError(f"limit must be within 1..{MAX_FILLS_LIMIT}")
        if body.after is not None and body.market is None:
            raise ValueError("after is a per-market cursor, so it needs market")
        if body.after is not None and body.after < 0:
            raise ValueError("after must not be negative")
    if isinstance(body, Book) and body.depth is not None and not 1 <= body.depth <= MAX_BOOK_DEPTH:
        raise ValueError(f"depth must be within 1..{MAX_BOOK_DEPTH}")
    if isinstance(body, Subscribe | Unsubscribe):
        # Each book channel subscribed costs a full snapshot of the book: a repeated
        # channel in one request would multiply that by the count of one 64 KiB frame.
        if len({(c.name, c.market) for c in body.channels}) < len(body.channels):
            raise ValueError("a channel is listed more than once")
        for channel in body.channels:
            if channel.name != "user" and channel.market is None:
                raise ValueError(f"the {channel.name} channel needs a market")
            if channel.name != "user" and channel.user is not None:
                raise ValueError(f"the {channel.name} channel is public: it takes no user")


def engine_command(body: NewOrder | Cancel | Amend | CancelAll, user: str) -> dict[str, Any]:
    """The engine command for a client command: its fields plus ``type`` and ``user``."""
    cmd: dict[str, Any] = {"type": COMMANDS[type(body)]}
    for field in attrs.fields(type(body)):
        value = getattr(body, field.name)
        if value is not None:
            cmd[field.name] = value
    cmd["user"] = user
    return cmd


def reply_ok(request_id: RequestId, result: dict[str, Any]) -> str:
    """A success reply as the text of one frame."""
    return orjson.dumps({"id": request_id, "ok": True, "result": result}).decode()


def reply_error(request_id: RequestId, error: GatewayError) -> str:
    """A failure reply as the text of one frame."""
    return orjson.dumps({"id": request_id, "ok": False, "error": error.to_wire()}).decode()


def encode(message: dict[str, Any]) -> str:
    """A pushed stream message as the text of one frame."""
    return orjson.dumps(message).decode()

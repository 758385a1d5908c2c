"""Typed engine commands for code that builds them (clients, tests, tools).

The engine itself accepts decoded JSON (``Engine.execute(dict, seq)``) and
validates it by hand in :mod:`clob.parse`, since that is what arrives from
the log and the wire. These frozen classes are the typed way to *write* a
command: :func:`to_json` turns one into the exact dict ENGINE.md describes
(decimal strings stay strings; optional fields left as None are omitted).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import cattrs

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
Tif = Literal["gtc", "ioc", "fok"]
Stp = Literal["cancel_taker", "cancel_maker", "cancel_both"]


@attrs.frozen
class CreateMarket:
    market: str
    tick_size: str
    lot_size: str


@attrs.frozen
class NewOrder:
    market: str
    user: str
    side: Side
    qty: str
    order_type: OrderType = "limit"
    price: str | None = None
    client_order_id: str | None = None
    tif: Tif | None = None
    post_only: bool | None = None
    stp: Stp | None = None


@attrs.frozen
class Cancel:
    market: str
    user: str
    order_id: int | None = None
    client_order_id: str | None = None


@attrs.frozen
class Amend:
    market: str
    user: str
    order_id: int | None = None
    client_order_id: str | None = None
    price: str | None = None
    qty: str | None = None


@attrs.frozen
class CancelAll:
    user: str
    market: str | None = None


@attrs.frozen
class OrdersQuery:
    user: str
    market: str | None = None


@attrs.frozen
class FillsQuery:
    user: str
    market: str | None = None
    after: int | None = None
    limit: int | None = None


@attrs.frozen
class BookQuery:
    market: str
    depth: int | None = None


Command = (
    CreateMarket | NewOrder | Cancel | Amend | CancelAll | OrdersQuery | FillsQuery | BookQuery
)

# The stable wire tag of each command class.
TAGS: dict[type[Any], str] = {
    CreateMarket: "create_market",
    NewOrder: "new_order",
    Cancel: "cancel",
    Amend: "amend",
    CancelAll: "cancel_all",
    OrdersQuery: "orders",
    FillsQuery: "fills",
    BookQuery: "book",
}

converter = cattrs.Converter()


def to_json(command: Command) -> dict[str, Any]:
    """The JSON-ready dict of a command, tagged with its ``type``."""
    fields: dict[str, Any] = converter.unstructure(command)
    body = {key: value for key, value in fields.items() if value is not None}
    return {"type": TAGS[type(command)], **body}

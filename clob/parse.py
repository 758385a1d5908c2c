"""Validation of untrusted decoded JSON into engine arguments.

Each ``parse_*`` function checks one command type in the precedence order of
ENGINE.md: first every structural check (``bad_command``: missing or ill-typed
field, value outside its list, malformed decimal), then ``unknown_market`` /
``market_exists``, then ``invalid_qty``, ``invalid_price`` and
``invalid_tif``. The checks that need the book (``unknown_order``,
``duplicate_client_order_id``, ``would_take``) happen in :mod:`clob.market`.
A failed check raises :class:`~clob.events.Reject`.

These are hand-written rather than a cattrs structure hook: they run once per
command on the hot path and avoid building an intermediate object.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, overload

from clob.decimals import MAX_DECIMAL_CHARS, is_decimal
from clob.events import (
    BAD_COMMAND,
    INVALID_PRICE,
    INVALID_QTY,
    INVALID_TIF,
    UNKNOWN_MARKET,
    Reject,
)
from clob.market import CANCEL_BOTH, CANCEL_MAKER, CANCEL_TAKER, FOK, GTC, IOC, Market

MARKET_NAME: Final = re.compile(r"[A-Z0-9-]{1,32}")
# The grammar of clob.decimals.is_decimal without its length bound (see long_decimal).
_PLAIN_DECIMAL: Final = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# A well-formed decimal too long to convert: it names no valid step count.
OUT_OF_RANGE: Final = "0"
MAX_USER_CHARS: Final = 64
MAX_CLIENT_ORDER_ID_CHARS: Final = 64
DEFAULT_FILLS_LIMIT: Final = 100
MAX_FILLS_LIMIT: Final = 1000
DEFAULT_BOOK_DEPTH: Final = 10

_TIFS: Final = (GTC, IOC, FOK)
_STPS: Final = (CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH)

Command = dict[str, Any]


def bad(message: str) -> Reject:
    """A ``bad_command`` rejection."""
    return Reject(BAD_COMMAND, message)


def user_field(cmd: Command) -> str:
    user = cmd.get("user")
    if type(user) is not str or not 0 < len(user) <= MAX_USER_CHARS:
        raise bad("'user' must be a string of 1 to 64 characters")
    return user


def market_field(cmd: Command) -> str:
    market = cmd.get("market")
    if type(market) is not str:
        raise bad("'market' must be a string")
    return market


def optional_market_field(cmd: Command) -> str | None:
    market = cmd.get("market")
    if market is not None and type(market) is not str:
        raise bad("'market' must be a string when given")
    return market


def long_decimal(text: str, key: str) -> str:
    """``text``, a plain decimal of any length, in the shortest form the engine converts.

    Used for a string that failed :func:`is_decimal`, which refuses strings over
    ``MAX_DECIMAL_CHARS`` so that ``int()`` never meets thousands of digits: such
    a string may still be a well-formed decimal (``"1.000…0"``, ``"000…5"``), and
    ENGINE.md makes that a value error (``invalid_qty`` / ``invalid_price``) or a
    valid value, never ``bad_command``. Also used for tick and lot sizes, whose
    shortest form is what snapshots store and check. Leading and trailing zeros
    are dropped with string operations only; a value whose shortest form is still
    over ``MAX_DECIMAL_CHARS`` is out of range (:data:`OUT_OF_RANGE`). Raises
    ``bad_command`` for text that is not a plain decimal at all.
    """
    if _PLAIN_DECIMAL.fullmatch(text) is None:
        raise bad(f"'{key}' must be a decimal number in a string")
    negative = text.startswith("-")
    whole, _, frac = (text[1:] if negative else text).partition(".")
    whole = whole.lstrip("0")
    frac = frac.rstrip("0")
    if not whole and not frac:
        return OUT_OF_RANGE
    canonical = ("-" if negative else "") + (whole or "0") + ("." + frac if frac else "")
    return canonical if len(canonical) <= MAX_DECIMAL_CHARS else OUT_OF_RANGE


def decimal_field(cmd: Command, key: str, required: bool) -> str | None:
    value = cmd.get(key)
    if value is None:
        if required:
            raise bad(f"'{key}' is required")
        return None
    if type(value) is not str:
        raise bad(f"'{key}' must be a decimal number in a string")
    return value if is_decimal(value) else long_decimal(value, key)


def int_field(cmd: Command, key: str) -> int | None:
    value = cmd.get(key)
    if value is not None and type(value) is not int:
        raise bad(f"'{key}' must be an integer")
    return value


def lookup(markets: dict[str, Market], name: str) -> Market:
    market = markets.get(name)
    if market is None:
        raise Reject(UNKNOWN_MARKET, f"market {name!r} does not exist")
    return market


# ---------------------------------------------------------------- commands


def parse_create_market(cmd: Command) -> tuple[str, str, str]:
    """``(market, tick_size, lot_size)``; the existence and sign checks follow."""
    name = market_field(cmd)
    if MARKET_NAME.fullmatch(name) is None:
        raise bad("'market' must be 1 to 32 characters of A-Z, 0-9 and '-'")
    tick = decimal_field(cmd, "tick_size", True)
    lot = decimal_field(cmd, "lot_size", True)
    assert tick is not None and lot is not None
    # ".000…1" passes is_decimal in 100 characters but is "0.000…1" in 101 once stored
    return name, long_decimal(tick, "tick_size"), long_decimal(lot, "lot_size")


NewOrderArgs = tuple[Market, str, "str | None", bool, "int | None", int, str, bool, str]


def parse_new_order(cmd: Command, markets: dict[str, Market]) -> NewOrderArgs:
    """``(market, user, client_order_id, is_buy, price|None, qty, tif, post_only, stp)``.

    Fast path: a price or qty string already in the market's conversion cache
    is known to be a well-formed decimal, so the regex check is skipped; the
    market is looked up early but ``unknown_market`` is still reported only
    after every ``bad_command`` check.
    """
    name = cmd.get("market")
    user = cmd.get("user")
    coid = cmd.get("client_order_id")
    side = cmd.get("side")
    order_type = cmd.get("order_type")
    price_text = cmd.get("price")
    qty_text = cmd.get("qty")
    # Most orders carry no tif, post_only or stp: when every key of the command
    # is one already read ("type" plus the non-None values above), those three
    # are absent and their lookups (about 200 instructions each) are skipped.
    present = 1 + (name is not None) + (user is not None) + (coid is not None)
    present += (side is not None) + (order_type is not None)
    present += (price_text is not None) + (qty_text is not None)
    if len(cmd) == present:
        tif = post_only = stp = None
    else:
        tif = cmd.get("tif")
        post_only = cmd.get("post_only")
        stp = cmd.get("stp")
    # bad_command checks
    if type(name) is not str:
        raise bad("'market' must be a string")
    if type(user) is not str or not 0 < len(user) <= MAX_USER_CHARS:
        raise bad("'user' must be a string of 1 to 64 characters")
    if coid is not None and (type(coid) is not str or len(coid) > MAX_CLIENT_ORDER_ID_CHARS):
        raise bad("'client_order_id' must be a string of at most 64 characters")
    # `type(...) is str` first: compiled, a str comparison is far cheaper than a generic one
    if type(side) is str and side == "buy":
        is_buy = True
    elif type(side) is str and side == "sell":
        is_buy = False
    else:
        raise bad("'side' must be 'buy' or 'sell'")
    if type(order_type) is str and order_type == "limit":
        is_market = False
        if price_text is None:
            raise bad("'price' is required for a limit order")
    elif type(order_type) is str and order_type == "market":
        is_market = True
    else:
        raise bad("'order_type' must be 'limit' or 'market'")
    market = markets.get(name)
    qty: int | None = None
    price: int | None = None
    if type(qty_text) is not str:
        raise bad("'qty' must be a decimal number in a string")
    if market is not None:
        qty = market.lot.known.get(qty_text)
    if qty is None and not is_decimal(qty_text):
        qty_text = long_decimal(qty_text, "qty")
    if price_text is not None:
        if type(price_text) is not str:
            raise bad("'price' must be a decimal number in a string")
        if market is not None:
            price = market.tick.known.get(price_text)
        if price is None and not is_decimal(price_text):
            price_text = long_decimal(price_text, "price")
    if tif is not None and (type(tif) is not str or tif not in _TIFS):
        raise bad("'tif' must be 'gtc', 'ioc' or 'fok'")
    if post_only is None:
        post_only = False
    elif type(post_only) is not bool:
        raise bad("'post_only' must be a boolean")
    if stp is None:
        stp = CANCEL_TAKER
    elif type(stp) is not str or stp not in _STPS:
        raise bad("'stp' must be 'cancel_taker', 'cancel_maker' or 'cancel_both'")
    # state and value checks, in precedence order
    if market is None:
        raise Reject(UNKNOWN_MARKET, f"market {name!r} does not exist")
    if qty is None:
        qty = market.lot.steps_of(qty_text)
    if not qty:
        raise Reject(INVALID_QTY, f"qty must be a positive multiple of {market.lot.text}")
    if is_market:
        if price_text is not None:
            raise Reject(INVALID_PRICE, "a market order has no price")
        if tif is None:
            tif = IOC
        elif tif == GTC:
            raise Reject(INVALID_TIF, "a market order cannot be gtc")
    else:
        if price is None:
            assert price_text is not None  # a limit order without price is bad_command
            price = market.tick.steps_of(price_text)
        if not price:
            raise Reject(INVALID_PRICE, f"price must be a positive multiple of {market.tick.text}")
        if tif is None:
            tif = GTC
    if post_only and (is_market or tif != GTC):
        raise Reject(INVALID_TIF, "post_only applies to gtc limit orders only")
    return market, user, coid, is_buy, price, qty, tif, post_only, stp


@overload
def parse_cancel(
    cmd: Command, markets: dict[str, Market]
) -> tuple[Market, str, int | None, str | None]: ...


@overload
def parse_cancel(
    cmd: Command, markets: dict[str, Market], check_market: Literal[False]
) -> tuple[Market | None, str, int | None, str | None]: ...


def parse_cancel(
    cmd: Command, markets: dict[str, Market], check_market: bool = True
) -> tuple[Market | None, str, int | None, str | None]:
    """``(market, user, order_id, client_order_id)``; exactly one id is set.

    Inlined field checks (this runs for a large share of all commands). With
    ``check_market`` False an unknown market is returned as None, for callers
    that have more ``bad_command`` checks to make first.
    """
    name = cmd.get("market")
    user = cmd.get("user")
    order_id = cmd.get("order_id")
    # a cancel by order id is usually type, market, user and order_id only
    coid = None if order_id is not None and len(cmd) == 4 else cmd.get("client_order_id")
    if type(name) is not str:
        raise bad("'market' must be a string")
    if type(user) is not str or not 0 < len(user) <= MAX_USER_CHARS:
        raise bad("'user' must be a string of 1 to 64 characters")
    if order_id is not None:
        if type(order_id) is not int:
            raise bad("'order_id' must be an integer")
        if coid is not None:
            raise bad("give exactly one of 'order_id' and 'client_order_id'")
    elif coid is None:
        raise bad("give exactly one of 'order_id' and 'client_order_id'")
    elif type(coid) is not str or len(coid) > MAX_CLIENT_ORDER_ID_CHARS:
        raise bad("'client_order_id' must be a string of at most 64 characters")
    market = markets.get(name)
    if market is None and check_market:
        raise Reject(UNKNOWN_MARKET, f"market {name!r} does not exist")
    return market, user, order_id, coid


def parse_amend(
    cmd: Command, markets: dict[str, Market]
) -> tuple[Market, str, int | None, str | None, int | None, int | None]:
    """``(market, user, order_id, client_order_id, price|None, qty|None)``."""
    market, user, order_id, coid = parse_cancel(cmd, markets, check_market=False)
    price_text = cmd.get("price")
    qty_text = cmd.get("qty")
    if price_text is None and qty_text is None:
        raise bad("an amend needs 'price', 'qty' or both")
    # a string in the market's conversion cache is a known well-formed decimal
    qty = price = None
    if qty_text is not None:
        if type(qty_text) is not str:
            raise bad("'qty' must be a decimal number in a string")
        if market is not None:
            qty = market.lot.known.get(qty_text)
        if qty is None and not is_decimal(qty_text):
            qty_text = long_decimal(qty_text, "qty")
    if price_text is not None:
        if type(price_text) is not str:
            raise bad("'price' must be a decimal number in a string")
        if market is not None:
            price = market.tick.known.get(price_text)
        if price is None and not is_decimal(price_text):
            price_text = long_decimal(price_text, "price")
    if market is None:
        raise Reject(UNKNOWN_MARKET, f"market {cmd['market']!r} does not exist")
    if qty_text is not None:
        if qty is None:
            qty = market.lot.steps_of(qty_text)
        if not qty:
            raise Reject(INVALID_QTY, f"qty must be a positive multiple of {market.lot.text}")
    if price_text is not None:
        if price is None:
            price = market.tick.steps_of(price_text)
        if not price:
            raise Reject(INVALID_PRICE, f"price must be a positive multiple of {market.tick.text}")
    return market, user, order_id, coid, price, qty


def parse_user_and_market(cmd: Command, markets: dict[str, Market]) -> tuple[str, Market | None]:
    """``cancel_all`` and ``orders``: a user and an optional existing market."""
    user = user_field(cmd)
    name = optional_market_field(cmd)
    return user, (None if name is None else lookup(markets, name))


def parse_fills(
    cmd: Command, markets: dict[str, Market]
) -> tuple[str, Market | None, int | None, int]:
    """``(user, market|None, after|None, limit)``."""
    user = user_field(cmd)
    name = optional_market_field(cmd)
    after = int_field(cmd, "after")
    limit = int_field(cmd, "limit")
    if limit is None:
        limit = DEFAULT_FILLS_LIMIT
    elif not 1 <= limit <= MAX_FILLS_LIMIT:
        raise bad("'limit' must be between 1 and 1000")
    if after is not None and name is None:
        raise bad("'after' is a trade id of one market and needs 'market'")
    return user, (None if name is None else lookup(markets, name)), after, limit


def parse_book(cmd: Command, markets: dict[str, Market]) -> tuple[Market, int]:
    """``(market, depth)``."""
    name = market_field(cmd)
    depth = int_field(cmd, "depth")
    if depth is None:
        depth = DEFAULT_BOOK_DEPTH
    elif depth < 1:
        raise bad("'depth' must be at least 1")
    return lookup(markets, name), depth

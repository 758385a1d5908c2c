"""A deliberately naive reference model of the engine, for model-based tests.

Orders live in one flat list per market, scanned linearly and sorted on every
match. The model works in whole ticks and lots of markets with tick_size "1"
and lot_size "1", so its rows can be compared with the real engine's encoded
events. ``ModelMarket`` is one market driven with integers; ``ModelEngine``
takes the same well-formed command dicts as the engine (several markets,
queries, the value checks of ENGINE.md) and returns the expected rows.
``ModelMarket`` reports a rejection as ``{"type": "rejected", "reason"}``;
``ModelEngine`` adds ``seq`` and the echoed identifying fields (the model has
no human ``message``).
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
MARKET = "M"


def rejected(reason: str) -> Row:
    """A bare rejection, as ``ModelMarket`` returns it: type and reason only
    (``ModelEngine`` adds ``seq`` and the echoed fields)."""
    return {"type": "rejected", "reason": reason}


class ModelOrder:
    """One accepted order; ``time`` orders the queue within a price."""

    def __init__(
        self, oid: int, user: str, coid: str | None, side: str, price: int, qty: int, stp: str
    ) -> None:
        self.oid = oid
        self.user = user
        self.coid = coid
        self.side = side
        self.price = price
        self.qty = qty
        self.filled = 0
        self.stp = stp
        self.post_only = False
        self.time = 0


class ModelTrade:
    """One fill event plus what the ``fills`` query needs besides it."""

    def __init__(self, row: Row, taker: ModelOrder, maker: ModelOrder) -> None:
        self.row = row
        self.seq: int = row["seq"]
        self.taker_coid = taker.coid
        self.maker_coid = maker.coid

    def query_row(self, user: str) -> Row:
        """The row of this trade in ``user``'s ``fills`` query answer."""
        row = self.row
        taker = row["taker_user"] == user
        side = row["taker_side"]
        if not taker:
            side = "sell" if side == "buy" else "buy"
        return {
            "market": row["market"],
            "trade_id": row["trade_id"],
            "order_id": row["taker_order_id"] if taker else row["maker_order_id"],
            "client_order_id": self.taker_coid if taker else self.maker_coid,
            "side": side,
            "price": row["price"],
            "qty": row["qty"],
            "liquidity": "taker" if taker else "maker",
        }


class ModelMarket:
    """One market: a flat list of live orders, re-sorted whenever it matters."""

    def __init__(self, name: str = MARKET) -> None:
        self.name = name
        self.orders: list[ModelOrder] = []
        self.next_oid = 1
        self.next_tid = 1
        self.clock = 0
        self.fills: list[Row] = []
        self.trades: list[ModelTrade] = []

    # ------------------------------------------------------------ helpers

    def _stamp(self, order: ModelOrder) -> None:
        self.clock += 1
        order.time = self.clock

    def makers_for(self, side: str, limit: int | None) -> list[ModelOrder]:
        """Opposite orders the taker may reach, in priority order."""
        if side == "buy":
            found = [o for o in self.orders if o.side == "sell"]
            found = [o for o in found if limit is None or o.price <= limit]
            return sorted(found, key=lambda o: (o.price, o.time))
        found = [o for o in self.orders if o.side == "buy"]
        found = [o for o in found if limit is None or o.price >= limit]
        return sorted(found, key=lambda o: (-o.price, o.time))

    def crosses(self, side: str, price: int) -> bool:
        return bool(self.makers_for(side, price))

    def live(self, user: str, oid: int | None, coid: str | None) -> ModelOrder | None:
        for o in self.orders:
            if o.user == user and (o.oid == oid if oid is not None else o.coid == coid):
                return o
        return None

    def best(self, side: str) -> int | None:
        prices = [o.price for o in self.orders if o.side == side]
        if not prices:
            return None
        return max(prices) if side == "buy" else min(prices)

    # ------------------------------------------------------------ matching

    def _match(self, seq: int, taker: ModelOrder, limit: int | None, out: list[Row]) -> bool:
        """Trade ``taker``; True when self-trade prevention cancelled it."""
        for maker in self.makers_for(taker.side, limit):
            if taker.qty == 0:
                break
            if maker.user == taker.user:
                if taker.stp in ("cancel_maker", "cancel_both"):
                    self.orders.remove(maker)
                    out.append(self._cancel_row(seq, maker, "stp"))
                if taker.stp in ("cancel_taker", "cancel_both"):
                    out.append(self._cancel_row(seq, taker, "stp"))
                    return True
                continue
            qty = min(taker.qty, maker.qty)
            row = {
                "type": "fill",
                "seq": seq,
                "market": self.name,
                "trade_id": self.next_tid,
                "price": str(maker.price),
                "qty": str(qty),
                "taker_order_id": taker.oid,
                "maker_order_id": maker.oid,
                "taker_user": taker.user,
                "maker_user": maker.user,
                "taker_side": taker.side,
            }
            self.next_tid += 1
            out.append(row)
            self.fills.append(row)
            self.trades.append(ModelTrade(row, taker, maker))
            taker.qty -= qty
            taker.filled += qty
            maker.qty -= qty
            maker.filled += qty
            if maker.qty == 0:
                self.orders.remove(maker)
        return False

    def _fok_ok(self, taker: ModelOrder, limit: int | None) -> bool:
        need = taker.qty
        for maker in self.makers_for(taker.side, limit):
            if maker.user == taker.user:
                if taker.stp == "cancel_maker":
                    continue
                return False
            need -= maker.qty
            if need <= 0:
                return True
        return False

    def _cancel_row(self, seq: int, order: ModelOrder, reason: str) -> Row:
        return {
            "type": "cancelled",
            "seq": seq,
            "market": self.name,
            "order_id": order.oid,
            "user": order.user,
            "remaining_qty": str(order.qty),
            "reason": reason,
        }

    # ------------------------------------------------------------ commands

    def new_order(
        self,
        seq: int,
        user: str,
        coid: str | None,
        side: str,
        price: int | None,
        qty: int,
        tif: str | None,
        post_only: bool,
        stp: str,
    ) -> list[Row]:
        """A new order with well-formed, positive ``qty`` and ``price`` (None: market)."""
        if price is None and tif == "gtc":
            return [rejected("invalid_tif")]
        effective_tif = tif or ("ioc" if price is None else "gtc")
        if post_only and (price is None or effective_tif != "gtc"):
            return [rejected("invalid_tif")]
        if coid is not None and self.live(user, None, coid) is not None:
            return [rejected("duplicate_client_order_id")]
        if post_only and price is not None and self.crosses(side, price):
            return [rejected("would_take")]
        order = ModelOrder(self.next_oid, user, coid, side, price or 0, qty, stp)
        order.post_only = post_only
        self.next_oid += 1
        out: list[Row] = [
            {
                "type": "accepted",
                "seq": seq,
                "market": self.name,
                "order_id": order.oid,
                "user": user,
                "client_order_id": coid,
                "side": side,
                "order_type": "market" if price is None else "limit",
                "price": None if price is None else str(price),
                "qty": str(qty),
                "tif": effective_tif,
                "post_only": post_only,
            }
        ]
        if effective_tif == "fok" and not self._fok_ok(order, price):
            out.append(self._cancel_row(seq, order, "fok"))
            return out
        if self._match(seq, order, price, out):
            return out
        if order.qty:
            if effective_tif == "gtc":
                self._stamp(order)
                self.orders.append(order)
            else:
                out.append(self._cancel_row(seq, order, "ioc"))
        return out

    def cancel(self, seq: int, user: str, oid: int | None, coid: str | None) -> list[Row]:
        order = self.live(user, oid, coid)
        if order is None:
            return [rejected("unknown_order")]
        self.orders.remove(order)
        return [self._cancel_row(seq, order, "user")]

    def cancel_all(self, seq: int, user: str) -> list[Row]:
        mine = sorted((o for o in self.orders if o.user == user), key=lambda o: o.oid)
        for order in mine:
            self.orders.remove(order)
        return [self._cancel_row(seq, o, "cancel_all") for o in mine]

    def amend(
        self,
        seq: int,
        user: str,
        oid: int | None,
        price: int | None,
        qty: int | None,
        coid: str | None = None,
    ) -> list[Row]:
        """Amend a live order named by ``oid`` (or by ``coid`` when ``oid`` is None)."""
        order = self.live(user, oid, coid)
        if order is None:
            return [rejected("unknown_order")]
        new_price = order.price if price is None else price
        new_qty = order.qty if qty is None else qty
        moved = new_price != order.price
        if moved and order.post_only and self.crosses(order.side, new_price):
            return [rejected("would_take")]
        if moved or new_qty > order.qty:
            self._stamp(order)
        order.price = new_price
        order.qty = new_qty
        out: list[Row] = [
            {
                "type": "amended",
                "seq": seq,
                "market": self.name,
                "order_id": order.oid,
                "user": user,
                "price": str(new_price),
                "qty": str(new_qty),
            }
        ]
        if moved:
            self.orders.remove(order)
            if self._match(seq, order, new_price, out):
                return out
            if order.qty:
                self.orders.append(order)
        return out

    # ------------------------------------------------------------ state

    def book(self, depth: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Aggregated (price, qty) levels, best first (at most ``depth`` each)."""
        sides: dict[str, dict[int, int]] = {"buy": {}, "sell": {}}
        for o in self.orders:
            sides[o.side][o.price] = sides[o.side].get(o.price, 0) + o.qty
        bids = sorted(sides["buy"].items(), reverse=True)
        asks = sorted(sides["sell"].items())
        return bids[:depth], asks[:depth]

    def queues(self, side: str) -> list[tuple[int, list[int]]]:
        """``(price, order ids oldest first)`` of one side, best price first."""
        levels: dict[int, list[ModelOrder]] = {}
        for o in self.orders:
            if o.side == side:
                levels.setdefault(o.price, []).append(o)
        prices = sorted(levels, reverse=side == "buy")
        return [(p, [o.oid for o in sorted(levels[p], key=lambda o: o.time)]) for p in prices]

    def order_rows(self, user: str) -> list[Row]:
        """The user's rows of an ``orders`` query answer, by order id."""
        mine = sorted((o for o in self.orders if o.user == user), key=lambda o: o.oid)
        return [
            {
                "market": self.name,
                "order_id": o.oid,
                "client_order_id": o.coid,
                "side": o.side,
                "price": str(o.price),
                "qty": str(o.qty),
                "filled_qty": str(o.filled),
                "tif": "gtc",
                "post_only": o.post_only,
            }
            for o in mine
        ]

    def user_trades(self, user: str) -> list[ModelTrade]:
        return [t for t in self.trades if user in (t.row["taker_user"], t.row["maker_user"])]


class ModelEngine:
    """Several ``ModelMarket``s behind the engine's command dicts.

    ``execute`` accepts only the well-formed commands the model-based test
    builds (every field of the right JSON type), and applies the value checks
    of ENGINE.md in its precedence order.
    """

    def __init__(self) -> None:
        self.markets: dict[str, ModelMarket] = {}

    def execute(self, command: Row, seq: int) -> list[Row]:
        """The rows the engine should emit for ``command`` at ``seq``."""
        kind = command["type"]
        handler = {
            "create_market": self._create_market,
            "new_order": self._new_order,
            "cancel": self._cancel,
            "amend": self._amend,
            "cancel_all": self._cancel_all,
            "orders": self._orders,
            "fills": self._fills,
            "book": self._book,
        }[kind]
        rows = handler(command, seq)
        for row in rows:
            if row["type"] == "rejected":
                row["seq"] = seq
                for key, kind_of in (
                    ("market", str),
                    ("user", str),
                    ("client_order_id", str),
                    ("order_id", int),
                ):
                    if type(command.get(key)) is kind_of:
                        row[key] = command[key]
        return rows

    def _named(self, command: Row) -> ModelMarket | None:
        return self.markets.get(command["market"])

    def _create_market(self, command: Row, seq: int) -> list[Row]:
        name = command["market"]
        if name in self.markets:
            return [rejected("market_exists")]
        assert command["tick_size"] == "1" and command["lot_size"] == "1", command
        self.markets[name] = ModelMarket(name)
        return [
            {
                "type": "market_created",
                "seq": seq,
                "market": name,
                "tick_size": "1",
                "lot_size": "1",
            }
        ]

    def _new_order(self, command: Row, seq: int) -> list[Row]:
        market = self._named(command)
        if market is None:
            return [rejected("unknown_market")]
        qty = int(command["qty"])
        if qty <= 0:
            return [rejected("invalid_qty")]
        price: int | None = None
        if command["order_type"] == "market":
            if "price" in command:
                return [rejected("invalid_price")]
        else:
            price = int(command["price"])
            if price <= 0:
                return [rejected("invalid_price")]
        return market.new_order(
            seq,
            command["user"],
            command.get("client_order_id"),
            command["side"],
            price,
            qty,
            command.get("tif"),
            command.get("post_only", False),
            command.get("stp", "cancel_taker"),
        )

    def _cancel(self, command: Row, seq: int) -> list[Row]:
        market = self._named(command)
        if market is None:
            return [rejected("unknown_market")]
        oid, coid = command.get("order_id"), command.get("client_order_id")
        return market.cancel(seq, command["user"], oid, coid)

    def _amend(self, command: Row, seq: int) -> list[Row]:
        if "price" not in command and "qty" not in command:
            return [rejected("bad_command")]
        market = self._named(command)
        if market is None:
            return [rejected("unknown_market")]
        qty = None if "qty" not in command else int(command["qty"])
        if qty is not None and qty <= 0:
            return [rejected("invalid_qty")]
        price = None if "price" not in command else int(command["price"])
        if price is not None and price <= 0:
            return [rejected("invalid_price")]
        oid, coid = command.get("order_id"), command.get("client_order_id")
        return market.amend(seq, command["user"], oid, price, qty, coid)

    def _chosen(self, command: Row) -> list[ModelMarket] | None:
        """The named market, or every market by name; None for an unknown name."""
        name = command.get("market")
        if name is None:
            return [self.markets[n] for n in sorted(self.markets)]
        market = self.markets.get(name)
        return None if market is None else [market]

    def _cancel_all(self, command: Row, seq: int) -> list[Row]:
        chosen = self._chosen(command)
        if chosen is None:
            return [rejected("unknown_market")]
        return [row for market in chosen for row in market.cancel_all(seq, command["user"])]

    def _orders(self, command: Row, seq: int) -> list[Row]:
        chosen = self._chosen(command)
        if chosen is None:
            return [rejected("unknown_market")]
        user = command["user"]
        rows = [row for market in chosen for row in market.order_rows(user)]
        return [{"type": "orders", "seq": seq, "user": user, "orders": rows}]

    def _fills(self, command: Row, seq: int) -> list[Row]:
        limit = command.get("limit", 100)
        after = command.get("after")
        if not 1 <= limit <= 1000 or (after is not None and command.get("market") is None):
            return [rejected("bad_command")]
        chosen = self._chosen(command)
        if chosen is None:
            return [rejected("unknown_market")]
        user = command["user"]
        trades = sorted(
            (t for market in chosen for t in market.user_trades(user)), key=lambda t: t.seq
        )
        rest = [t for t in trades if after is None or t.row["trade_id"] > after]
        page = rest[:limit]
        cursor = None
        if command.get("market") is not None and len(rest) > limit:
            cursor = page[-1].row["trade_id"]
        rows = [t.query_row(user) for t in page]
        return [{"type": "fills", "seq": seq, "user": user, "fills": rows, "next": cursor}]

    def _book(self, command: Row, seq: int) -> list[Row]:
        depth = command.get("depth", 10)
        if depth < 1:
            return [rejected("bad_command")]
        market = self._named(command)
        if market is None:
            return [rejected("unknown_market")]
        bids, asks = market.book(depth)
        return [
            {
                "type": "book",
                "seq": seq,
                "market": market.name,
                "bids": [[str(p), str(q)] for p, q in bids],
                "asks": [[str(p), str(q)] for p, q in asks],
            }
        ]

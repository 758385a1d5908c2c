"""A deliberately naive reference model of one market, for model-based tests.

Orders live in one flat list scanned linearly and sorted on every match; it
works in whole ticks and lots of a market with tick_size "1" and lot_size "1",
so its events can be compared with the real engine's encoded events. Rejected
commands are reported as ``{"type": "rejected", "reason": ...}`` only.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
MARKET = "M"


class ModelOrder:
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


class ModelMarket:
    def __init__(self) -> None:
        self.orders: list[ModelOrder] = []
        self.next_oid = 1
        self.next_tid = 1
        self.clock = 0
        self.fills: list[Row] = []

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
                "market": MARKET,
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
            "market": MARKET,
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
        if price is None and tif == "gtc":
            return [{"type": "rejected", "reason": "invalid_tif"}]
        effective_tif = tif or ("ioc" if price is None else "gtc")
        if post_only and (price is None or effective_tif != "gtc"):
            return [{"type": "rejected", "reason": "invalid_tif"}]
        if coid is not None and self.live(user, None, coid) is not None:
            return [{"type": "rejected", "reason": "duplicate_client_order_id"}]
        if post_only and price is not None and self.crosses(side, price):
            return [{"type": "rejected", "reason": "would_take"}]
        order = ModelOrder(self.next_oid, user, coid, side, price or 0, qty, stp)
        order.post_only = post_only
        self.next_oid += 1
        out: list[Row] = [
            {
                "type": "accepted",
                "seq": seq,
                "market": MARKET,
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
            return [{"type": "rejected", "reason": "unknown_order"}]
        self.orders.remove(order)
        return [self._cancel_row(seq, order, "user")]

    def cancel_all(self, seq: int, user: str) -> list[Row]:
        mine = sorted((o for o in self.orders if o.user == user), key=lambda o: o.oid)
        for order in mine:
            self.orders.remove(order)
        return [self._cancel_row(seq, o, "cancel_all") for o in mine]

    def amend(self, seq: int, user: str, oid: int, price: int | None, qty: int | None) -> list[Row]:
        order = self.live(user, oid, None)
        if order is None:
            return [{"type": "rejected", "reason": "unknown_order"}]
        new_price = order.price if price is None else price
        new_qty = order.qty if qty is None else qty
        moved = new_price != order.price
        if moved and order.post_only and self.crosses(order.side, new_price):
            return [{"type": "rejected", "reason": "would_take"}]
        if moved or new_qty > order.qty:
            self._stamp(order)
        order.price = new_price
        order.qty = new_qty
        out: list[Row] = [
            {
                "type": "amended",
                "seq": seq,
                "market": MARKET,
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

    def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Aggregated (price, qty) levels, best first."""
        sides: dict[str, dict[int, int]] = {"buy": {}, "sell": {}}
        for o in self.orders:
            sides[o.side][o.price] = sides[o.side].get(o.price, 0) + o.qty
        bids = sorted(sides["buy"].items(), reverse=True)
        asks = sorted(sides["sell"].items())
        return bids, asks

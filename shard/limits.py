"""What a deployed market allows one user beyond ENGINE.md: a cap on live orders.

ENGINE.md sets no limit on a user's live orders, and ``clob replay`` keeps it
that way. A replica group serving real clients cannot: in an ad hoc test of
the robustness audit (not kept as a command), one user holding 100,000 live
orders made each ``orders`` query cost the leader about 0.6 s (long enough to
lose its leadership) and each ``cancel_all`` about 0.66 s on every replica;
and past about 520,000 a single result would not fit a replica frame. So each
market of a cluster has ``max_live_orders_per_user``
(config/schema.py); a ``new_order`` from a user who already holds that many
live orders in the market is rejected with reason ``too_many_orders`` before
the engine sees it, as exchanges do (Binance: 200 open orders per symbol,
Coinbase: 500 per product). Every replica of a market reads the same
cluster file, so they refuse the same commands; a replica configured
differently would diverge, and the digest check stops it.
"""

from __future__ import annotations

from typing import Any, Final

from clob.engine import Engine
from clob.events import Event, Rejected

TOO_MANY_ORDERS: Final = "too_many_orders"


def live_order_refusal(engine: Engine, command: Any, seq: int, per_user: int) -> Rejected | None:
    """The rejection of ``command`` if it is a ``new_order`` whose user already holds
    ``per_user`` live orders in its market; None otherwise (and when ``per_user`` is 0)."""
    if not per_user or type(command) is not dict or command.get("type") != "new_order":
        return None
    name, user = command.get("market"), command.get("user")
    if type(name) is not str or type(user) is not str:
        return None  # ill-formed: the engine says what is wrong
    market = engine.markets.get(name)
    mine = None if market is None else market.user_live.get(user)
    # ``mine`` holds each live order under its id and, when it has one, its client
    # order id: its length bounds the count from above, so count only near the cap
    if mine is None or len(mine) < per_user:
        return None
    if sum(1 for key in mine if type(key) is int) < per_user:
        return None
    coid = command.get("client_order_id")
    message = f"at most {per_user} live orders per user in a market"
    return Rejected(seq, TOO_MANY_ORDERS, message, name, user,
                    coid if type(coid) is str else None, None)  # fmt: skip


class LimitedEngine:
    """An engine whose ``new_order`` is refused past ``per_user`` live orders (0: no cap),
    for replaying a deployed market's log (``chaos``) exactly as its replicas applied it."""

    def __init__(self, engine: Engine, per_user: int) -> None:
        self.engine = engine
        self.per_user = per_user

    def execute(self, command: Any, seq: int) -> list[Event]:
        refusal = live_order_refusal(self.engine, command, seq, self.per_user)
        return self.engine.execute(command, seq) if refusal is None else [refusal]

    def encode(self, event: Event) -> dict[str, Any]:
        return self.engine.encode(event)

"""Seeded concurrent clients that trade through the gateways and record everything.

Each client is one user with one WebSocket connection at a time (it moves to
the next gateway when its connection is lost), sending one request after
another: new orders (limit, market, ioc, fok, post-only, every ``stp``),
cancels, amends, ``cancel_all`` and ``orders`` queries, on every market. Its
user stream is recorded as one subscription session per connection; a
watcher records each market's trades stream the same way.

The workload keeps the promises :mod:`chaos.checker` relies on: a fresh
``client_order_id`` for every new order (it never retries a command
itself), cancels and amends by ``order_id``, and each order cancelled at
most once and amended at most once.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import attrs
import trio
import trio_websocket

from chaos.fills_checks import ALL_MARKETS
from chaos.history import COMMAND_OPS, History, Pending, Subscription
from config.schema import MarketConfig
from gateway.client import ClientError, Disconnected, GatewayClient, open_client
from shard.observability import get_logger

log = get_logger("chaos.workload")

# Codes after which the gateway promises the command was not applied.
DEFINITE_FAILURES = frozenset(
    {"bad_request", "unauthenticated", "forbidden", "unknown_market", "unavailable",
     "rate_limited", "too_large"}
)  # fmt: skip
_SESSION_ERRORS = (
    ClientError,
    OSError,
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
)


def definitely_not_applied(op: str, exc: ClientError) -> bool:
    """Whether a failed request certainly had no effect (queries never have one)."""
    if exc.code in DEFINITE_FAILURES or op not in COMMAND_OPS:
        return True
    return exc.code == "timeout" and not exc.indeterminate


@attrs.frozen
class WorkloadSettings:
    clients: int = 6
    think_max_s: float = 0.02  # pause between a client's requests, uniform in [0, this]
    request_timeout_s: float = 15.0  # client-side bound, above the gateway's own
    reconnect_backoff_s: float = 0.2
    ca_file: str | None = None  # wss:// gateways are verified against this CA


@attrs.frozen
class MarketSpec:
    name: str
    tick: Decimal
    lot: Decimal
    mid_ticks: int

    @classmethod
    def from_config(cls, market: MarketConfig) -> MarketSpec:
        tick = Decimal(market.tick_size)
        return cls(market.name, tick, Decimal(market.lot_size), int(Decimal(100) / tick))

    def price(self, ticks: int) -> str:
        return str(self.tick * max(1, ticks))

    def qty(self, lots: int) -> str:
        return str(self.lot * lots)


class OrderGenerator:
    """The seeded stream of requests of one user (pure: no I/O, no clock)."""

    def __init__(self, name: str, rng: random.Random, markets: Sequence[MarketSpec]) -> None:
        self.name = name
        self.rng = rng
        self.markets = list(markets)
        self._cids = itertools.count(1)
        self.cancellable: dict[str, list[int]] = {m.name: [] for m in markets}
        self.amendable: dict[str, list[int]] = {m.name: [] for m in markets}

    def learn(self, market: str, events: Sequence[dict[str, Any]], user: str) -> None:
        """Remember the user's accepted resting candidates from a reply's events."""
        for event in events:
            resting_kind = event.get("tif") == "gtc"
            if event.get("type") == "accepted" and event.get("user") == user and resting_kind:
                self.cancellable[market].append(int(event["order_id"]))
                self.amendable[market].append(int(event["order_id"]))

    def _take(self, pool: list[int]) -> int | None:
        if not pool:
            return None
        return pool.pop(self.rng.randrange(len(pool)))

    def next_request(self) -> tuple[str, str, dict[str, Any]]:
        """(op, market, request fields) of the next request."""
        market = self.rng.choice(self.markets)
        roll = self.rng.random()
        if roll < 0.15:
            target = self._take(self.cancellable[market.name])
            if target is not None:
                return "cancel", market.name, {"market": market.name, "order_id": target}
        elif roll < 0.25:
            target = self._take(self.amendable[market.name])
            if target is not None:
                fields: dict[str, Any] = {"market": market.name, "order_id": target}
                if self.rng.random() < 0.5:
                    fields["qty"] = market.qty(self.rng.randint(1, 3))
                else:
                    fields["price"] = market.price(market.mid_ticks + self.rng.randint(-8, 8))
                return "amend", market.name, fields
        elif roll < 0.27:
            return "cancel_all", market.name, {"market": market.name}
        elif roll < 0.42:
            return "orders", market.name, {"market": market.name}
        elif roll < 0.45:
            return "fills", ALL_MARKETS, {}  # every market's, in the order they happened
        return "new_order", market.name, self._new_order(market)

    def _new_order(self, market: MarketSpec) -> dict[str, Any]:
        rng = self.rng
        side = rng.choice(("buy", "sell"))
        fields: dict[str, Any] = {
            "market": market.name,
            "client_order_id": f"{self.name}-{next(self._cids)}",
            "side": side,
            "qty": market.qty(rng.randint(1, 5)),
        }
        if rng.random() < 0.1:
            fields["order_type"] = "market"
            if rng.random() < 0.3:
                fields["tif"] = "fok"
        else:
            fields["order_type"] = "limit"
            offset = rng.randint(-4, 10)  # mostly passive, sometimes crossing
            ticks = market.mid_ticks - offset if side == "buy" else market.mid_ticks + offset
            fields["price"] = market.price(ticks)
            tif = rng.choices(("gtc", "ioc", "fok"), weights=(8, 1, 1))[0]
            fields["tif"] = tif
            if tif == "gtc" and rng.random() < 0.1:
                fields["post_only"] = True
        if rng.random() < 0.3:
            fields["stp"] = rng.choice(("cancel_taker", "cancel_maker", "cancel_both"))
        return fields


def _rotation(urls: Sequence[str], start: int) -> Iterator[str]:
    ordered = list(urls[start % len(urls) :]) + list(urls[: start % len(urls)])
    return itertools.cycle(ordered)


class WorkloadClient:
    """One user: requests one at a time, its user stream recorded per connection."""

    def __init__(
        self,
        name: str,
        user: str,
        api_key: str,
        urls: Sequence[str],
        history: History,
        generator: OrderGenerator,
        settings: WorkloadSettings,
        index: int,
    ) -> None:
        self.name = name
        self.user = user
        self.api_key = api_key
        self.urls = _rotation(urls, index)
        self.history = history
        self.generator = generator
        self.settings = settings
        self.reconnects = 0

    async def run(self, deadline: float) -> None:
        """Trade until ``deadline`` (trio clock), reconnecting whenever the connection is lost."""
        while trio.current_time() < deadline:
            url = next(self.urls)
            try:
                await self._session(url, deadline)
            except* _SESSION_ERRORS as group:
                log.info(
                    "session ended", client=self.name, url=url, error=repr(group.exceptions[0])
                )
                self.reconnects += 1
                await trio.sleep(self.settings.reconnect_backoff_s)

    async def _session(self, url: str, deadline: float) -> None:
        async with (
            open_client(url, api_key=self.api_key, ca_file=self.settings.ca_file) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(self._record_user_stream, client)
            while trio.current_time() < deadline and client.closed_reason is None:
                op, market, fields = self.generator.next_request()
                await self._request(client, op, market, fields)
                await trio.sleep(self.generator.rng.random() * self.settings.think_max_s)
            nursery.cancel_scope.cancel()
        if trio.current_time() < deadline:
            raise Disconnected(client.closed_reason or "closed")

    async def _record_user_stream(self, client: GatewayClient) -> None:
        subscription: Subscription | None = None
        async with client.user_stream() as stream:
            async for item in stream:
                if subscription is None or item.after_gap:
                    # a gap of our own queue starts a new session: it is not the system's fault
                    subscription = self.history.subscribe(self.name, self.user, "user", None)
                subscription.record(
                    {"channel": "user", "market": item.market, "seq": item.seq, "event": item.event}
                )

    async def _request(
        self, client: GatewayClient, op: str, market: str, fields: dict[str, Any]
    ) -> None:
        pending = self.history.invoke(self.name, self.user, op, market, fields)
        try:
            with trio.fail_after(self.settings.request_timeout_s):
                result = await client.request(op, **fields)
        except trio.TooSlowError:
            self._unknown(pending, "client_timeout")
        except ClientError as exc:
            if definitely_not_applied(op, exc):
                self.history.fail(pending, exc.code)
            else:
                self._unknown(pending, exc.code)
            if isinstance(exc, Disconnected):
                raise
        else:
            if op in COMMAND_OPS:
                events = list(result.get("events", []))
                self.generator.learn(market, events, self.user)
            else:
                events = [result]
            self.history.ok(pending, int(result["seq"]), events)

    def _unknown(self, pending: Pending, reason: str) -> None:
        if pending.op in COMMAND_OPS:
            self.history.indeterminate(pending, reason)
        else:
            self.history.fail(pending, reason)  # a query changes nothing


class TradesWatcher:
    """Records one market's public trades stream, one session per connection."""

    def __init__(
        self,
        market: str,
        urls: Sequence[str],
        history: History,
        index: int,
        ca_file: str | None = None,
    ) -> None:
        self.market = market
        self.ca_file = ca_file
        self.urls = _rotation(urls, index)
        self.history = history

    async def run(self, deadline: float) -> None:
        while trio.current_time() < deadline:
            url = next(self.urls)
            try:
                with trio.move_on_after(max(0.0, deadline - trio.current_time())):
                    await self._session(url)
            except* _SESSION_ERRORS as group:
                log.info(
                    "trades session ended", market=self.market, error=repr(group.exceptions[0])
                )
                await trio.sleep(0.2)

    async def _session(self, url: str) -> None:
        subscription: Subscription | None = None
        async with (
            open_client(url, ca_file=self.ca_file) as client,
            client.trades_stream(self.market) as stream,
        ):
            async for trade in stream:
                if subscription is None or trade.after_gap:
                    subscription = self.history.subscribe("watcher", "-", "trades", self.market)
                subscription.record(
                    {
                        "channel": "trades",
                        "market": trade.market,
                        "type": "trade",
                        "seq": trade.seq,
                        "trade_id": trade.trade_id,
                        "price": trade.price,
                        "qty": trade.qty,
                        "taker_side": trade.taker_side,
                    }
                )
        raise Disconnected(client.closed_reason or "stream ended")


async def run_workload(
    *,
    seed: int,
    seconds: float,
    urls: Sequence[str],
    api_keys: dict[str, str],
    markets: Sequence[MarketConfig],
    history: History,
    settings: WorkloadSettings = WorkloadSettings(),
) -> list[WorkloadClient]:
    """Run every client and one trades watcher per market for ``seconds``."""
    specs = [MarketSpec.from_config(m) for m in markets]
    users = sorted(api_keys)
    clients = [
        WorkloadClient(
            f"c{i}",
            users[i % len(users)],
            api_keys[users[i % len(users)]],
            urls,
            history,
            OrderGenerator(f"c{i}", random.Random(f"{seed}-c{i}"), specs),
            settings,
            i,
        )
        for i in range(settings.clients)
    ]
    deadline = trio.current_time() + seconds
    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(client.run, deadline)
        for index, spec in enumerate(specs):
            watcher = TradesWatcher(spec.name, urls, history, index, settings.ca_file)
            nursery.start_soon(watcher.run, deadline)
    history.close()
    return clients

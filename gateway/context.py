"""Everything one gateway process shares between its connections."""

from __future__ import annotations

import itertools

import attrs

from gateway.auth import KeyStore
from gateway.marketdata import MarketFeed
from gateway.routing import Market, Router
from gateway.settings import GatewaySettings


@attrs.define
class GatewayStats:
    """Counters tests and benchmarks read directly (Prometheus has the same and more)."""

    connections: int = 0
    accepted: int = 0
    slow_consumers: int = 0
    idle_closed: int = 0
    handler_errors: int = 0


class GatewayContext:
    """The router, the market feeds, the keys and the limits of one gateway."""

    def __init__(
        self,
        markets: list[Market],
        keys: KeyStore,
        settings: GatewaySettings | None = None,
        *,
        name: str = "gw",
    ) -> None:
        self.name = name
        self.router = Router(markets)
        self.keys = keys
        self.settings = settings if settings is not None else GatewaySettings()
        self.feeds = {
            m.name: MarketFeed(m.name, m.backend, gateway=name) for m in self.router.markets
        }
        self.stats = GatewayStats()
        self._ids = itertools.count(1)

    def next_connection_id(self) -> int:
        return next(self._ids)

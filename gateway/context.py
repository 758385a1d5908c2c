"""Everything one gateway process shares between its connections."""

from __future__ import annotations

import itertools
from typing import Protocol

import attrs
import trio

from gateway.auth import KeyStore
from gateway.marketdata import MarketFeed
from gateway.routing import Market, Router
from gateway.settings import GatewaySettings
from shard.observability import get_logger


@attrs.define
class GatewayStats:
    """Counters tests and benchmarks read directly (Prometheus has the same and more)."""

    connections: int = 0
    accepted: int = 0
    refused: int = 0  # handshakes refused by the connection caps
    slow_consumers: int = 0
    idle_closed: int = 0
    handler_errors: int = 0


class KeyHolder(Protocol):
    """A connection authenticated with some key (told when that key is revoked)."""

    def key_revoked(self) -> None: ...


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
        self.key_holders: dict[str, set[KeyHolder]] = {}  # key id -> connections using it
        self._ids = itertools.count(1)
        self._open_by_address: dict[str, int] = {}  # connections admitted, by remote address
        self._admitted = 0

    def next_connection_id(self) -> int:
        return next(self._ids)

    def admit(self, address: str) -> bool:
        """Reserve a connection from ``address`` if both connection caps allow it;
        :meth:`release` gives it back."""
        from_there = self._open_by_address.get(address, 0)
        if (
            self._admitted >= self.settings.max_connections
            or from_there >= self.settings.max_connections_per_address
        ):
            return False
        self._open_by_address[address] = from_there + 1
        self._admitted += 1
        return True

    def release(self, address: str) -> None:
        self._admitted -= 1
        left = self._open_by_address[address] - 1
        if left:
            self._open_by_address[address] = left
        else:
            del self._open_by_address[address]

    def hold_key(self, key_id: str, holder: KeyHolder) -> None:
        self.key_holders.setdefault(key_id, set()).add(holder)

    def release_key(self, key_id: str, holder: KeyHolder) -> None:
        holders = self.key_holders.get(key_id)
        if holders is not None:
            holders.discard(holder)
            if not holders:
                del self.key_holders[key_id]

    async def watch_keys(self) -> None:
        """Close every connection whose key was revoked, within ``keys_poll_seconds``.

        Runs until cancelled; an unreadable keys file is logged and changes nothing."""
        log = get_logger("gateway.auth", gateway=self.name)
        while True:
            await trio.sleep(self.settings.keys_poll_seconds)
            if not self.key_holders:
                continue
            try:
                valid = self.keys.key_ids()
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.error("cannot read the keys file", error=repr(exc))
                continue
            for key_id in [k for k in self.key_holders if k not in valid]:
                log.info("key revoked; closing its connections", key_id=key_id)
                for holder in list(self.key_holders.pop(key_id, ())):
                    holder.key_revoked()

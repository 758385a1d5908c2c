"""Building a gateway from the cluster configuration (used by ``clob gateway`` and ``clob up``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio
from trio_websocket import WebSocketServer

from config.load import parse_address
from config.schema import ClusterConfig, GatewayConfig
from config.secret import read_secret
from gateway.auth import KeyStore
from gateway.backend import LocalBackend, MarketBackend
from gateway.context import GatewayContext
from gateway.routing import Market
from gateway.server import serve_gateway
from gateway.settings import GatewaySettings
from shard.node.client import ShardClient
from shard.node.tls import client_context, gateway_context
from shard.observability import get_logger, serve_metrics


def gateway_config(config: ClusterConfig, name: str) -> GatewayConfig:
    for gateway in config.gateways:
        if gateway.name == name:
            return gateway
    known = ", ".join(g.name for g in config.gateways) or "none"
    raise ValueError(f"no gateway named {name!r} in the configuration (known: {known})")


@asynccontextmanager
async def open_backends(
    config: ClusterConfig, *, client_id: str, local_engine: bool = False
) -> AsyncIterator[dict[str, MarketBackend]]:
    """One backend per market: a ShardClient per replica group, or in-process engines.

    ``client_id`` must be unique per gateway process: it is half of the
    idempotency key of every command the gateway forwards.
    """
    secret = None if local_engine else read_secret(config)
    tls = None if local_engine else client_context(config)  # TlsError names the key
    async with AsyncExitStack() as stack:
        backends: dict[str, MarketBackend] = {}
        for market in config.markets:
            if local_engine:
                backends[market.name] = LocalBackend(market.name, market.tick_size, market.lot_size)
            else:
                # gather_writes: the lanes woken by one read of replies send in one write
                client = ShardClient(
                    market, client_id=client_id, gather_writes=True, secret=secret, tls=tls
                )
                await stack.enter_async_context(client)
                backends[market.name] = client
        yield backends


async def run_gateway(
    config: ClusterConfig,
    name: str,
    *,
    local_engine: bool = False,
    settings: GatewaySettings | None = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve gateway ``name`` of ``config`` until cancelled (metrics too, when configured)."""
    gateway = gateway_config(config, name)
    log = get_logger("gateway", gateway=name)
    host, port = parse_address(gateway.listen)
    ssl_context = gateway_context(config, name)  # None: ws://
    if gateway.metrics:
        metrics_host, metrics_port = parse_address(gateway.metrics)
        serve_metrics(metrics_port, metrics_host)
    client_id = f"{name}-{os.urandom(6).hex()}"
    async with open_backends(config, client_id=client_id, local_engine=local_engine) as backends:
        markets = [
            Market(m.name, m.tick_size, m.lot_size, backends[m.name]) for m in config.markets
        ]
        context = GatewayContext(markets, KeyStore(config.keys_file), settings, name=name)
        log.info(
            "starting gateway",
            listen=gateway.listen,
            client_id=client_id,
            backend="local" if local_engine else "replicas",
        )
        await serve_gateway(context, host, port, ssl_context=ssl_context, task_status=task_status)

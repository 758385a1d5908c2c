"""A real gateway on 127.0.0.1 (port 0) over LocalBackend markets, for the gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from gateway.auth import KeyStore
from gateway.backend import LocalBackend
from gateway.context import GatewayContext
from gateway.routing import Market
from gateway.server import serve_gateway
from gateway.settings import GatewaySettings

MARKETS = (("BTC-USD", "0.01", "0.001"), ("ETH-USD", "0.01", "0.01"))
# A well-formed new_order request without an id (tests add one).
ORDER: dict[str, Any] = {
    "op": "new_order",
    "market": "BTC-USD",
    "side": "buy",
    "order_type": "limit",
    "price": "10.00",
    "qty": "1",
}


@attrs.define
class Harness:
    url: str
    context: GatewayContext
    backends: dict[str, LocalBackend]
    keys: dict[str, str]  # user -> API key
    store: KeyStore


@asynccontextmanager
async def running_gateway(
    tmp_path: Path,
    settings: GatewaySettings | None = None,
    users: tuple[str, ...] = ("alice", "bob"),
) -> AsyncIterator[Harness]:
    store = KeyStore(tmp_path / "keys.json")
    keys = {user: store.create(user).api_key for user in users}
    backends = {name: LocalBackend(name, tick, lot) for name, tick, lot in MARKETS}
    markets = [Market(name, tick, lot, backends[name]) for name, tick, lot in MARKETS]
    context = GatewayContext(markets, store, settings, name="gw-test")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_gateway, context, "127.0.0.1", 0)
        yield Harness(f"ws://127.0.0.1:{server.port}/", context, backends, keys, store)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def raw(url: str, **kwargs: Any) -> AsyncIterator[WebSocketConnection]:
    opened: list[WebSocketConnection] = []
    try:
        async with open_websocket_url(url, **kwargs) as ws:
            opened.append(ws)
            yield ws
    finally:
        # trio-websocket 0.12 does not release the socket when the peer closed first
        for ws in opened:
            await ws._close_stream()


async def send(ws: WebSocketConnection, doc: Any) -> None:
    await ws.send_message(orjson.dumps(doc).decode())


async def recv(ws: WebSocketConnection, timeout: float = 5.0) -> dict[str, Any]:
    with trio.fail_after(timeout):
        message = orjson.loads(await ws.get_message())
    assert isinstance(message, dict)
    return message


async def call(ws: WebSocketConnection, doc: dict[str, Any]) -> dict[str, Any]:
    """Send a request and return its reply, skipping stream messages in between."""
    await send(ws, doc)
    while True:
        message = await recv(ws)
        if "channel" not in message:
            return message


async def settle(harness: Harness) -> None:
    """Until every market feed has applied everything its backend applied."""
    with trio.fail_after(10):
        while any(harness.context.feeds[m].seq < b.seq for m, b in harness.backends.items()):
            await trio.sleep(0.01)


async def until_barrier(ws: WebSocketConnection) -> list[dict[str, Any]]:
    """Every message that arrives before the reply to a ping sent now (queued ahead of it)."""
    await send(ws, {"op": "ping", "id": "barrier"})
    got: list[dict[str, Any]] = []
    while True:
        message = await recv(ws)
        if message.get("id") == "barrier":
            return got
        got.append(message)

"""Connection-level behaviour: heartbeats, idle timeout, abrupt disconnects."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway.client import Disconnected, open_client
from gateway.settings import GatewaySettings
from tests.gateway_harness import call, raw, running_gateway, send

FAST_HEARTBEAT = GatewaySettings(ping_interval_seconds=0.1, idle_timeout_seconds=1.0)


async def test_a_quiet_but_responsive_connection_stays_open(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, FAST_HEARTBEAT) as gw, raw(gw.url) as ws:
        await trio.sleep(2.5)  # many heartbeats, no frames from us
        assert (await call(ws, {"op": "ping", "id": 1}))["ok"] is True
        assert gw.context.stats.idle_closed == 0


async def test_a_connection_that_stops_answering_pings_is_closed(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, FAST_HEARTBEAT) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", int(gw.url.rsplit(":", 1)[1].strip("/")))
        handshake = (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await stream.send_all(handshake.encode())
        assert b"101" in await stream.receive_some(4096)
        # we never answer the pings that follow
        with trio.fail_after(5):
            while gw.context.stats.idle_closed == 0:
                await trio.sleep(0.05)
        await stream.aclose()


async def test_clients_vanishing_mid_request_do_not_hurt_the_server(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        for _ in range(5):
            async with raw(gw.url) as ws:
                await call(ws, {"op": "auth", "id": 0, "api_key": gw.keys["alice"]})
                for i in range(20):
                    await send(
                        ws,
                        {
                            "op": "new_order",
                            "id": i,
                            "market": "BTC-USD",
                            "side": "buy",
                            "order_type": "limit",
                            "price": "1.00",
                            "qty": "1",
                        },
                    )
                await send(ws, {"op": "subscribe", "id": "s", "channels": [{"name": "user"}]})
            # closed without reading any reply
        # not a WebSocket at all
        stream = await trio.open_tcp_stream("127.0.0.1", int(gw.url.rsplit(":", 1)[1].strip("/")))
        await stream.send_all(b"hello\r\n\r\n")
        await stream.aclose()
        async with open_client(gw.url, api_key=gw.keys["alice"]) as alice:
            # requests still queued when a connection drops may or may not be applied
            assert len(await alice.orders()) <= 100
        with trio.fail_after(5):
            while gw.context.stats.connections:
                await trio.sleep(0.01)
        assert gw.context.stats.handler_errors == 0
        assert all(feed.subscriber_count() == 0 for feed in gw.context.feeds.values())


async def test_closed_connection_is_reported_to_pending_requests(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, open_client(gw.url) as client:
        await client.ws.aclose()
        with pytest.raises(Disconnected) as info:
            await client.ping()
        assert info.value.retryable and info.value.indeterminate

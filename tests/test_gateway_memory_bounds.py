"""What one connection may make the gateway hold: its outgoing buffer by count and by size,
one shared book snapshot per seq, and a rate-limit token for every frame, oversized or not."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
import trio
from prometheus_client import REGISTRY

from gateway.marketdata import MarketFeed
from gateway.outbox import Outbox
from gateway.server import DESCRIPTOR_MARGIN, ensure_descriptors
from gateway.settings import GatewaySettings
from shard.node.api import AppliedItem
from shard.observability import get_logger
from tests.gateway_harness import call, raw, running_gateway


async def test_the_outbox_overflows_on_size_as_on_count() -> None:
    box = Outbox(limit=100, limit_chars=1000)
    assert box.push("x" * 2000)  # one message larger than the bound still goes when alone
    assert await box.get_many(10) == ["x" * 2000]
    for _ in range(3):
        assert box.push("y" * 300)
    assert len(box) == 3
    assert await box.get_many(2) == ["y" * 300] * 2  # taken ones no longer count
    assert box.push("z" * 600)  # 300 + 600 queued: within the bound
    assert not box.push("w" * 200)  # 1,100: overflowed, the backlog dropped
    assert box.overflowed and len(box) == 0
    assert await box.get_many(10) is None


class _Sink:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def push(self, message: str) -> None:
        self.messages.append(message)


def test_subscribers_at_one_seq_share_one_encoded_snapshot() -> None:
    feed = MarketFeed("BTC-USD", backend=None)  # type: ignore[arg-type]
    feed.synced = True
    feed.apply(AppliedItem(5, [], [("BTC-USD", "buy", "100.00", "1.000")]))
    first, second = _Sink(), _Sink()
    feed.add_book(first)
    feed.add_book(second)
    assert first.messages[0] is second.messages[0]  # one string, not one copy each
    assert '"seq":5' in first.messages[0] and "100.00" in first.messages[0]
    feed.apply(AppliedItem(6, [], [("BTC-USD", "sell", "101.00", "2.000")]))
    late = _Sink()
    feed.add_book(late)
    assert '"seq":6' in late.messages[0] and "101.00" in late.messages[0]
    assert first.messages[-1] != late.messages[0]  # an update, then a fresh snapshot


async def test_an_oversized_frame_costs_a_rate_limit_token(tmp_path: Path) -> None:
    settings = GatewaySettings(max_frame_bytes=1000, rate_per_second=0.001, rate_burst=3)
    async with running_gateway(tmp_path, settings) as gw, raw(gw.url) as ws:
        for i in range(3):
            reply = await call(ws, {"op": "ping", "id": i, "pad": "x" * 2000})
            assert reply["error"]["code"] == "too_large"
        reply = await call(ws, {"op": "ping", "id": "after"})
        assert reply["ok"] is False and reply["error"]["code"] == "rate_limited"
        with trio.fail_after(1):
            assert (await call(ws, {"op": "ping", "id": "again"}))["error"]["retryable"]


async def test_connections_past_the_caps_are_refused_and_their_places_come_back(
    tmp_path: Path,
) -> None:
    settings = GatewaySettings(max_connections=3, max_connections_per_address=2)
    refused = REGISTRY.get_sample_value("gateway_refused_connections_total") or 0.0
    async with running_gateway(tmp_path, settings) as gw:
        async with raw(gw.url) as first, raw(gw.url) as second:
            for ws in (first, second):
                assert (await call(ws, {"op": "ping", "id": 1}))["ok"]
            assert (await _handshake_status(gw.url)).startswith(b"HTTP/1.1 503")  # a third
            assert gw.context.stats.refused == 1
            assert REGISTRY.get_sample_value("gateway_refused_connections_total") == refused + 1
        async with raw(gw.url) as again:  # the two places were given back
            assert (await call(again, {"op": "ping", "id": 2}))["ok"]
        # the total cap, counted without the address cap
        assert gw.context.admit("10.0.0.1") and gw.context.admit("10.0.0.2")
        assert gw.context.admit("10.0.0.3") and not gw.context.admit("10.0.0.4")
        for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            gw.context.release(address)
        assert gw.context.admit("10.0.0.4")


async def test_the_gateway_closes_a_refused_connection_itself(tmp_path: Path) -> None:
    """A refused client that keeps its socket open must not keep a place on the gateway
    (a file descriptor and a reader task): trio-websocket leaves it open after the 503,
    so refusals alone would let one address hold any number of sockets."""
    settings = GatewaySettings(max_connections=3, max_connections_per_address=1)
    async with running_gateway(tmp_path, settings) as gw, raw(gw.url) as first:
        assert (await call(first, {"op": "ping", "id": 1}))["ok"]
        for _ in range(3):
            response = await _refused_response(gw.url)  # read until the gateway closes
            assert response.startswith(b"HTTP/1.1 503") and response.endswith(b"connections")


async def test_a_connection_that_never_completes_its_handshake_is_closed(tmp_path: Path) -> None:
    settings = GatewaySettings(handshake_timeout_seconds=0.3)
    async with running_gateway(tmp_path, settings) as gw:
        host, port = gw.url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as silent:
            await silent.send_all(b"GET / HTTP/1.1\r\n")  # and nothing more
            with trio.fail_after(5):
                assert await silent.receive_some(4096) == b""  # closed by the gateway
        async with raw(gw.url) as ws:  # a client that completes it is served
            assert (await call(ws, {"op": "ping", "id": 1}))["ok"]


async def _handshake(url: str) -> trio.SocketStream:
    """A plain socket that has sent a WebSocket handshake to ``url``."""
    host, port = url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return stream


async def _handshake_status(url: str) -> bytes:
    """The status line a WebSocket handshake to ``url`` gets (a plain socket, so that a
    refused handshake leaves nothing open)."""
    async with await _handshake(url) as stream:
        with trio.fail_after(5):
            response = await stream.receive_some(4096)
    return response.split(b"\r\n", 1)[0]


async def _refused_response(url: str) -> bytes:
    """Everything the gateway sends a handshake before it closes the connection (this
    side never closes first; fails after 5 seconds)."""
    async with await _handshake(url) as stream:
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(4096):
                received += chunk
    return received


@pytest.mark.parametrize(
    ("soft", "hard", "now", "warned"),
    [
        (1024, 4096, 4096, True),  # raised as far as allowed, still short: said so
        (1024, resource.RLIM_INFINITY, 11_024, False),
        (1024, 50_000, 11_024, False),
        (20_000, 20_000, 20_000, False),  # enough already: untouched
    ],
)
def test_the_gateway_raises_its_open_file_limit_for_the_connections_it_admits(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    soft: int,
    hard: int,
    now: int,
    warned: bool,
) -> None:
    limits = {resource.RLIMIT_NOFILE: (soft, hard)}
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits[which])
    monkeypatch.setattr(resource, "setrlimit", lambda which, pair: limits.update({which: pair}))
    log = get_logger("test.fd")
    needed = GatewaySettings().max_connections + DESCRIPTOR_MARGIN
    assert ensure_descriptors(needed, log) == now
    assert limits[resource.RLIMIT_NOFILE] == (now, hard)
    assert ("below the connections" in caplog.text) is warned

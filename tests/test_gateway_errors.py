"""Every error code of PROTOCOL.md, and malformed input, through a real gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from gateway.settings import GatewaySettings
from shard.node.api import CommandResult, CommandTimeout, Unavailable
from tests.gateway_harness import ORDER, call, raw, recv, running_gateway, send, until_barrier


def error_of(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"] is False, reply
    error: dict[str, Any] = reply["error"]
    assert set(error) >= {"code", "message", "retryable"}
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    "frame",
    ["{not json", "[1, 2]", '"text"', "42", "null", '{"id": 7}', '{"op": 5, "id": 7}'],
)
async def test_malformed_frames_get_bad_request_with_null_id(tmp_path: Path, frame: str) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await ws.send_message(frame)
        reply = await recv(ws)
        assert reply["id"] is None
        assert error_of(reply)["code"] == "bad_request"
        assert error_of(reply)["retryable"] is False
        # the connection stays open
        pong = await call(ws, {"op": "ping", "id": "after"})
        assert pong["ok"] is True and pong["id"] == "after"


@pytest.mark.parametrize(
    "change",
    [
        {"qty": 1},  # a number where a decimal string belongs
        {"price": 10.5},
        {"qty": "ten"},
        {"side": "up"},
        {"order_type": "stop"},
        {"tif": "day"},
        {"post_only": "yes"},
        {"market": 3},
        {"client_order_id": 12},
        {"client_order_id": "x" * 65},
        {"extra_field": 1},
        {"type": "cancel"},
        {"price": None, "order_type": "limit"},
    ],
)
async def test_ill_typed_requests_are_bad_request(tmp_path: Path, change: dict[str, Any]) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 1, "api_key": gw.keys["alice"]})
        doc = {**ORDER, "id": "x", **change}
        doc = {k: v for k, v in doc.items() if v is not None}
        reply = await call(ws, doc)
        assert reply["id"] == "x"
        assert error_of(reply)["code"] == "bad_request"
        assert gw.backends["BTC-USD"].seq == 1  # nothing reached the engine


@pytest.mark.parametrize(
    "doc",
    [
        {"op": "launch"},
        {"op": "cancel", "market": "BTC-USD"},
        {"op": "cancel", "market": "BTC-USD", "order_id": 1, "client_order_id": "a"},
        {"op": "amend", "market": "BTC-USD", "order_id": 1},
        {"op": "fills", "after": 3},
        {"op": "fills", "market": "BTC-USD", "limit": 0},
        {"op": "fills", "market": "BTC-USD", "limit": 1001},
        {"op": "book", "market": "BTC-USD", "depth": 0},
        {"op": "book"},
        {"op": "subscribe", "channels": []},
        {"op": "subscribe", "channels": "book"},
        {"op": "subscribe", "channels": [{"name": "book"}]},
        {"op": "subscribe", "channels": [{"name": "candles", "market": "BTC-USD"}]},
        {"op": "auth", "api_key": 5},
        {"op": "ping", "id": True},
    ],
)
async def test_other_bad_requests(tmp_path: Path, doc: dict[str, Any]) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 1, "api_key": gw.keys["alice"]})
        reply = await call(ws, {"id": 9, **doc})
        assert reply["id"] == (None if doc.get("id") is True else 9)
        assert error_of(reply)["code"] == "bad_request"


async def test_unauthenticated(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        for i, doc in enumerate(
            [
                ORDER,
                {"op": "cancel", "market": "BTC-USD", "order_id": 1},
                {"op": "cancel_all"},
                {"op": "orders"},
                {"op": "fills"},
                {"op": "subscribe", "channels": [{"name": "user"}]},
                {"op": "auth", "api_key": "nope.nope"},
                {"op": "auth", "api_key": gw.keys["alice"] + "x"},
            ]
        ):
            error = error_of(await call(ws, {**doc, "id": i}))
            assert error["code"] == "unauthenticated" and error["retryable"] is False
        # public operations work before auth
        for doc in (
            {"op": "ping"},
            {"op": "markets"},
            {"op": "book", "market": "BTC-USD"},
            {"op": "subscribe", "channels": [{"name": "trades", "market": "BTC-USD"}]},
        ):
            assert (await call(ws, {**doc, "id": "p"}))["ok"] is True


async def test_revoked_key_no_longer_authenticates(tmp_path: Path) -> None:
    settings = GatewaySettings(keys_poll_seconds=0.05)
    async with running_gateway(tmp_path, settings) as gw, raw(gw.url) as ws, raw(gw.url) as other:
        assert (await call(ws, {"op": "auth", "id": 1, "api_key": gw.keys["bob"]}))["ok"]
        assert (await call(other, {"op": "auth", "id": 1, "api_key": gw.keys["alice"]}))["ok"]
        [gone] = gw.store.revoke("bob")
        assert gone.user == "bob"
        async with raw(gw.url) as ws2:
            reply = await call(ws2, {"op": "auth", "id": 2, "api_key": gw.keys["bob"]})
            assert error_of(reply)["code"] == "unauthenticated"
        # the connection that used the key is closed; others are not
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.reason.code == 1008
        assert (await call(other, {"op": "orders", "id": 3}))["ok"] is True


async def test_forbidden(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 1, "api_key": gw.keys["alice"]})
        error = error_of(await call(ws, {**ORDER, "id": 2, "user": "bob"}))
        assert error["code"] == "forbidden"
        error = error_of(await call(ws, {"op": "auth", "id": 3, "api_key": gw.keys["bob"]}))
        assert error["code"] == "forbidden"
        bob_channel = [{"name": "user", "user": "bob"}]
        error = error_of(await call(ws, {"op": "subscribe", "id": 4, "channels": bob_channel}))
        assert error["code"] == "forbidden"
        own = [{"name": "user", "user": "alice"}]
        assert (await call(ws, {"op": "subscribe", "id": 5, "channels": own}))["ok"] is True
        assert gw.backends["BTC-USD"].seq == 1


@pytest.mark.parametrize(
    "doc",
    [
        {**ORDER, "market": "DOGE-USD"},
        {"op": "cancel", "market": "btc-usd", "order_id": 1},
        {"op": "orders", "market": "NOPE"},
        {"op": "book", "market": "NOPE"},
        {"op": "subscribe", "channels": [{"name": "book", "market": "NOPE"}]},
    ],
)
async def test_unknown_market(tmp_path: Path, doc: dict[str, Any]) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 1, "api_key": gw.keys["alice"]})
        error = error_of(await call(ws, {**doc, "id": 2}))
        assert error["code"] == "unknown_market" and error["retryable"] is False


async def test_backend_failures_map_to_retryable_codes(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 1, "api_key": gw.keys["alice"]})
        backend = gw.backends["BTC-USD"]

        backend.fail_next(Unavailable("no leader"))
        error = error_of(await call(ws, {**ORDER, "id": 2}))
        assert error["code"] == "unavailable" and error["retryable"] is True

        backend.fail_next(CommandTimeout("lost", indeterminate=True))
        error = error_of(await call(ws, {**ORDER, "id": 3}))
        assert error["code"] == "timeout" and error["retryable"] is True
        assert error["indeterminate"] is True

        backend.fail_next(CommandTimeout("lost", indeterminate=False))
        error = error_of(await call(ws, {**ORDER, "id": 4}))
        assert error["code"] == "timeout" and error["indeterminate"] is False

        backend.fail_next(RuntimeError("bug"))
        error = error_of(await call(ws, {"op": "orders", "market": "BTC-USD", "id": 5}))
        assert error["code"] == "internal" and error["retryable"] is False

        # and the connection (and market) still work afterwards
        reply = await call(ws, {**ORDER, "id": 6})
        assert reply["ok"] is True and reply["result"]["events"][0]["type"] == "accepted"


async def test_gateway_bound_on_backend_call_gives_indeterminate_timeout(tmp_path: Path) -> None:
    settings = GatewaySettings(request_timeout_seconds=0.2)
    async with running_gateway(tmp_path, settings) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 1, "api_key": gw.keys["alice"]})
        backend = gw.backends["BTC-USD"]
        original = backend.submit

        async def stuck(command: dict[str, Any]) -> Any:
            await trio.sleep_forever()

        backend.submit = stuck  # type: ignore[method-assign]
        error = error_of(await call(ws, {**ORDER, "id": 2}))
        assert error["code"] == "timeout" and error["indeterminate"] is True
        backend.submit = original  # type: ignore[method-assign]


async def test_rate_limited(tmp_path: Path) -> None:
    settings = GatewaySettings(rate_per_second=0.1, rate_burst=5.0)
    async with running_gateway(tmp_path, settings) as gw, raw(gw.url) as ws:
        for i in range(12):
            await send(ws, {"op": "ping", "id": i})
        replies = [await recv(ws) for _ in range(12)]
        codes = [r["error"]["code"] if not r["ok"] else "ok" for r in replies]
        assert codes.count("ok") in (5, 6)  # the burst (plus at most one refill)
        assert codes.count("rate_limited") == 12 - codes.count("ok")
        limited = next(r for r in replies if not r["ok"])
        assert limited["error"]["retryable"] is True and isinstance(limited["id"], int)
        # another connection has its own bucket
        async with raw(gw.url) as other:
            assert (await call(other, {"op": "ping", "id": "o"}))["ok"] is True


async def test_too_large(tmp_path: Path) -> None:
    settings = GatewaySettings(max_frame_bytes=1000, hard_frame_bytes=100_000)
    async with running_gateway(tmp_path, settings) as gw, raw(gw.url) as ws:
        await send(ws, {"op": "ping", "id": 1, "pad": "x" * 2000})
        reply = await recv(ws)
        assert reply["id"] is None and error_of(reply)["code"] == "too_large"
        assert (await call(ws, {"op": "ping", "id": 2}))["ok"] is True
        # beyond the hard limit the frame is not even read: the socket closes with 1009
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send_message("x" * 200_000)
            await recv(ws)
        assert closed.value.reason.code == 1009


async def test_every_request_gets_exactly_one_reply_even_on_error(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        frames = [
            {"op": "ping", "id": "a"},
            {"op": "orders", "id": "b"},
            {"op": "markets", "id": "c"},
            {"op": "nope", "id": "d"},
        ]
        for frame in frames:
            await send(ws, frame)
        ids = [(await recv(ws))["id"] for _ in frames]
        assert sorted(ids) == ["a", "b", "c", "d"]
        assert await until_barrier(ws) == []  # nothing else came


async def test_a_malformed_backend_result_is_internal_not_fatal(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 1, "api_key": gw.keys["alice"]})
        backend = gw.backends["BTC-USD"]
        original = backend.query

        async def empty(command: dict[str, Any]) -> Any:
            return CommandResult(backend.seq, [])

        backend.query = empty  # type: ignore[method-assign]
        error = error_of(await call(ws, {"op": "orders", "market": "BTC-USD", "id": 2}))
        assert error["code"] == "internal"
        backend.query = original  # type: ignore[method-assign]
        assert (await call(ws, {"op": "orders", "market": "BTC-USD", "id": 3}))["ok"] is True

"""PROTOCOL.md through a real gateway: the envelope and stream edge cases other tests miss."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
from trio_websocket import WebSocketConnection

from gateway.errors import ErrorCode, GatewayError, timed_out
from tests.gateway_harness import ORDER, call, raw, recv, running_gateway, settle, until_barrier


async def frame(ws: WebSocketConnection, text: str | bytes) -> dict[str, Any]:
    """Send one raw frame and return the next message (a reply: nothing is subscribed)."""
    await ws.send_message(text)
    return await recv(ws)


async def call_keeping(
    ws: WebSocketConnection, doc: dict[str, Any], streamed: list[dict[str, Any]]
) -> dict[str, Any]:
    """:func:`call`, but the stream messages met on the way are kept in ``streamed``."""
    await ws.send_message(orjson.dumps(doc).decode())
    while True:
        message = await recv(ws)
        if "channel" not in message:
            return message
        streamed.append(message)


async def auth(ws: WebSocketConnection, key: str) -> None:
    reply = await call(ws, {"op": "auth", "id": "auth", "api_key": key})
    assert reply["ok"] is True, reply


# ------------------------------------------------------------------ deviation fixed here


@pytest.mark.parametrize("text", ["+1", "1\n", "\u0661", "1.5\n", "+.5"])
async def test_every_malformed_decimal_is_bad_request(tmp_path: Path, text: str) -> None:
    """docs/protocol.md: a decimal string that is not a plain decimal is the gateway's
    ``bad_request`` and never reaches the engine; these used to slip through the
    gateway's looser pattern and come back as an engine ``bad_command``."""
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await auth(ws, gw.keys["alice"])
        for doc in (
            {**ORDER, "id": "q", "qty": text},
            {**ORDER, "id": "p", "price": text},
            {"op": "amend", "id": "a", "market": "BTC-USD", "order_id": 1, "price": text},
        ):
            reply = await call(ws, doc)
            assert reply["id"] == doc["id"] and reply["ok"] is False, reply
            assert reply["error"]["code"] == "bad_request"
        assert gw.backends["BTC-USD"].seq == 1  # nothing reached the engine


# ------------------------------------------------------------- conforming, newly covered


async def test_ids_are_echoed_with_their_type(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        for request_id in ("", "0", 0, -5, 2**63 - 1, "\u00e9\u20ac" * 50):
            reply = await frame(ws, orjson.dumps({"op": "ping", "id": request_id}).decode())
            assert reply["ok"] is True and reply["id"] == request_id
            assert type(reply["id"]) is type(request_id)
        error = await frame(ws, '{"op":"launch","id":"kept"}')
        assert error["id"] == "kept" and error["error"]["code"] == "bad_request"
        error = await frame(ws, '{"op":"PING","id":7}')  # op names are case-sensitive
        assert error["id"] == 7 and error["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "text",
    [
        '{"op":"ping","id":1.5}',
        '{"op":"ping","id":null}',
        '{"op":"ping","id":{"n":1}}',
        '{"op":"ping","id":[1]}',
        '{"op":"ping"}',
        '{"op":"ping","id":18446744073709551616}',
        '{"id":3,"op":null}',
        "",
        "   ",
        '{"op":"ping","id":1}{"op":"ping","id":2}',
    ],
)
async def test_requests_without_a_usable_id_or_op_get_null_id(tmp_path: Path, text: str) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        reply = await frame(ws, text)
        assert reply["id"] is None and reply["ok"] is False
        assert reply["error"]["code"] == "bad_request" and reply["error"]["retryable"] is False
        assert (await frame(ws, '{"op":"ping","id":"still open"}'))["ok"] is True


async def test_a_binary_frame_gets_one_reply_and_the_connection_stays_open(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        for data in (b'{"op":"ping","id":"b"}', b"\xff\xfe"):
            await ws.send_message(data)
            got = await until_barrier(ws)
            assert len(got) == 1 and "ok" in got[0], got


def test_retryable_flag_follows_the_error_code() -> None:
    retryable = {"unavailable", "timeout", "rate_limited"}
    codes: tuple[ErrorCode, ...] = get_args(ErrorCode)
    assert set(codes) == {
        "bad_request",
        "unauthenticated",
        "forbidden",
        "unknown_market",
        "unavailable",
        "timeout",
        "rate_limited",
        "too_large",
        "internal",
    }
    for code in codes:
        wire = GatewayError(code, "Something.").to_wire()
        assert wire["retryable"] is (code in retryable), code
        assert "indeterminate" not in wire
    assert timed_out(is_command=True).to_wire()["indeterminate"] is True
    assert timed_out(is_command=False).to_wire().get("indeterminate") is not True


async def test_markets_lists_each_market_with_its_fields(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await settle(gw)
        reply = await call(ws, {"op": "markets", "id": 1})
        rows = reply["result"]["markets"]
        assert [(r["market"], r["tick_size"], r["lot_size"]) for r in rows] == [
            ("BTC-USD", "0.01", "0.001"),
            ("ETH-USD", "0.01", "0.01"),
        ]
        assert all(set(r) == {"market", "tick_size", "lot_size", "status"} for r in rows)


async def test_before_auth_a_subscribe_naming_the_user_channel_subscribes_nothing(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        book = {"name": "book", "market": "BTC-USD"}
        refused = await call(ws, {"op": "subscribe", "id": 1, "channels": [book, {"name": "user"}]})
        assert refused["error"]["code"] == "unauthenticated"
        assert await until_barrier(ws) == []  # no book snapshot for the public half
        left = await call(ws, {"op": "unsubscribe", "id": 2, "channels": [book]})
        assert left["ok"] is True
        for doc in ({"op": "fills"}, {"op": "orders", "market": "BTC-USD"}, {"op": "cancel_all"}):
            reply = await call(ws, {**doc, "id": 3})
            assert reply["error"]["code"] == "unauthenticated"


async def test_rejection_reply_and_user_stream_in_seq_order(tmp_path: Path) -> None:
    """An engine rejection is ``ok: true``; the user stream carries the caller's own
    accepted, fill, amend and cancel events (an STP cancel of its resting order too) in
    seq order, and never a rejection."""
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await auth(ws, gw.keys["alice"])
        subscribed = await call(ws, {"op": "subscribe", "id": 1, "channels": [{"name": "user"}]})
        assert subscribed["ok"] is True
        streamed: list[dict[str, Any]] = []
        rejected = await call_keeping(ws, {**ORDER, "id": 2, "qty": "0"}, streamed)
        assert rejected["ok"] is True
        [event] = rejected["result"]["events"]
        assert event["type"] == "rejected" and event["reason"] == "invalid_qty"
        assert event["market"] == "BTC-USD" and event["user"] == "alice"
        assert rejected["result"]["seq"] == event["seq"]
        for doc in (
            {**ORDER, "id": 3, "side": "sell"},
            {**ORDER, "id": 4, "stp": "cancel_maker"},  # cancels order 1, then rests
            {"op": "amend", "id": 5, "market": "BTC-USD", "order_id": 2, "qty": "0.5"},
        ):
            assert (await call_keeping(ws, doc, streamed))["ok"] is True
        await settle(gw)
        streamed += await until_barrier(ws)
        events = [m for m in streamed if m.get("channel") == "user"]
        assert [(m["event"]["type"], m["event"].get("reason")) for m in events] == [
            ("accepted", None),
            ("accepted", None),
            ("cancelled", "stp"),
            ("amended", None),
        ]
        assert [m["seq"] for m in events] == sorted(m["seq"] for m in events)
        assert all(m["market"] == "BTC-USD" and m["type"] == "event" for m in events)
        assert all(m["seq"] == m["event"]["seq"] for m in events)


async def test_resubscribing_to_the_book_restarts_the_chain_at_a_new_snapshot(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws, raw(gw.url) as trader:
        await auth(trader, gw.keys["alice"])
        book = {"op": "subscribe", "id": "b", "channels": [{"name": "book", "market": "BTC-USD"}]}
        streamed: list[dict[str, Any]] = []
        await call_keeping(ws, book, streamed)
        for i, price in enumerate(("10.00", "11.00")):
            assert (await call(trader, {**ORDER, "id": i, "price": price}))["ok"] is True
        await settle(gw)
        streamed += await until_barrier(ws)
        await call_keeping(ws, book, streamed)  # again: a fresh snapshot
        assert (await call(trader, {**ORDER, "id": 9, "price": "12.00"}))["ok"] is True
        await settle(gw)
        streamed += await until_barrier(ws)
        kinds = [(m["type"], m["seq"], m.get("prev_seq")) for m in streamed]
        assert kinds == [
            ("snapshot", 1, None),
            ("update", 2, 1),
            ("update", 3, 2),
            ("snapshot", 3, None),
            ("update", 4, 3),
        ]
        assert streamed[3]["bids"] == [["11.00", "1.000"], ["10.00", "1.000"]]
        assert streamed[4]["changes"] == [["buy", "12.00", "1.000"]]

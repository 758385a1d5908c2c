"""The trio client library for the gateway's WebSocket API (PROTOCOL.md).

    async with open_client("ws://127.0.0.1:8700/", api_key=key) as client:  # or wss://
        result = await client.new_order("BTC-USD", "buy", "0.5", price="100.00")
        async with client.book_stream("BTC-USD") as book:
            async for view in book:
                print(view.best_bid(), view.best_ask())

Requests are answered by id (any number may be in flight); a failed request
raises :class:`ClientError` with the gateway's ``code``, ``retryable`` and
``indeterminate``. Streams are async iterators that detect gaps (see
:mod:`gateway.client_streams`). The client owns one reader task in the
nursery of :func:`open_client`; leaving the block closes the connection.
A wss:// URL is verified against ``ca_file`` (PEM), or the system trust
store without one.
"""

from __future__ import annotations

import contextlib
import itertools
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from gateway.client_streams import BookStream, StreamQueue, TradeStream, UserStream
from gateway.settings import MAX_FRAME_BYTES
from shard.node.tls import HandshakeFailed, open_client_stream, websocket_client_context

# What this client accepts from a gateway it chose to trust: book snapshots can be
# large, and so can a command's reply (a taker sweeping 300,000 orders has as many fills).
CLIENT_MAX_MESSAGE = 1024 * 1024 * 1024
STREAM_QUEUE = 10_000
_CHECK_TIMEOUT_S = 10.0  # connecting and the TLS handshake of the certificate check
# Connecting and the WebSocket opening handshake. A gateway closes a connection that has
# not finished it in 10 s, so waiting longer (trio-websocket's default is 60 s) only
# delays the answer, e.g. for a ws:// URL pointed at a gateway that serves wss://.
CONNECT_TIMEOUT_S = 15.0


class ClientError(Exception):
    """A request the gateway answered with ``ok: false`` (or that got no answer)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        indeterminate: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.indeterminate = indeterminate


class Disconnected(ClientError):
    """The connection closed before the reply came (the request may have been applied)."""

    def __init__(self, reason: str) -> None:
        super().__init__("disconnected", reason, retryable=True, indeterminate=True)


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: dict[str, Any] | None = None


class GatewayClient:
    """One WebSocket connection to a gateway; build it with :func:`open_client`."""

    def __init__(self, ws: WebSocketConnection, *, stream_queue: int = STREAM_QUEUE) -> None:
        self.ws = ws
        self.user: str | None = None
        self.closed_reason: str | None = None  # e.g. "slow_consumer"
        self.system_messages: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._streams: dict[tuple[str, str | None], StreamQueue] = {}
        self._stream_queue = stream_queue

    # -- plumbing --------------------------------------------------------------------------------

    async def run_reader(self) -> None:
        """Dispatch incoming frames until the connection closes; then fail what is pending."""
        try:
            while True:
                try:
                    frame = await self.ws.get_message()
                except ConnectionClosed as exc:
                    self.closed_reason = self.closed_reason or str(exc.reason)
                    return
                self._dispatch(orjson.loads(frame))
        finally:
            for pending in self._pending.values():
                pending.done.set()
            for queue in self._streams.values():
                queue.close()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ok" in message and "id" in message:
            pending = self._pending.get(message["id"]) if isinstance(message["id"], int) else None
            if pending is not None:
                pending.reply = message
                pending.done.set()
            return
        channel = message.get("channel")
        if channel == "system":
            self.system_messages.append(message)
            if message.get("type") == "slow_consumer":
                self.closed_reason = "slow_consumer"
            return
        if channel == "user":
            for key in (("user", message.get("market")), ("user", None)):
                queue = self._streams.get(key)
                if queue is not None:
                    queue.put(message)
            return
        queue = self._streams.get((str(channel), message.get("market")))
        if queue is not None:
            queue.put(message)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; the ``result`` or :class:`ClientError`."""
        request_id = next(self._ids)
        pending = self._pending[request_id] = _Pending()
        try:
            frame = {"op": op, "id": request_id}
            frame.update({k: v for k, v in fields.items() if v is not None})
            text = orjson.dumps(frame).decode()
            if len(text) > MAX_FRAME_BYTES:  # the gateway would answer with id null
                raise ClientError("too_large", f"The request is over {MAX_FRAME_BYTES} bytes.")
            try:
                await self.ws.send_message(text)
            except ConnectionClosed as exc:
                raise Disconnected(str(exc.reason)) from None
            await pending.done.wait()
        finally:
            del self._pending[request_id]
        reply = pending.reply
        if reply is None:
            raise Disconnected(self.closed_reason or "connection closed")
        if reply["ok"]:
            result: dict[str, Any] = reply["result"]
            return result
        error = reply["error"]
        raise ClientError(
            error["code"],
            error["message"],
            retryable=bool(error.get("retryable")),
            indeterminate=bool(error.get("indeterminate")),
        )

    # -- operations ------------------------------------------------------------------------------

    async def auth(self, api_key: str) -> str:
        result = await self.request("auth", api_key=api_key)
        self.user = result["user"]
        return self.user

    async def ping(self) -> str:
        return str((await self.request("ping"))["time"])

    async def markets(self) -> list[dict[str, Any]]:
        return list((await self.request("markets"))["markets"])

    async def new_order(
        self,
        market: str,
        side: str,
        qty: str,
        price: str | None = None,
        *,
        order_type: str | None = None,
        client_order_id: str | None = None,
        tif: str | None = None,
        post_only: bool | None = None,
        stp: str | None = None,
    ) -> dict[str, Any]:
        """Place an order (limit when a price is given, else market); ``{"seq","events"}``."""
        return await self.request(
            "new_order",
            market=market,
            side=side,
            qty=qty,
            price=price,
            order_type=order_type or ("limit" if price is not None else "market"),
            client_order_id=client_order_id,
            tif=tif,
            post_only=post_only,
            stp=stp,
        )

    async def cancel(
        self, market: str, order_id: int | None = None, *, client_order_id: str | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "cancel", market=market, order_id=order_id, client_order_id=client_order_id
        )

    async def amend(
        self,
        market: str,
        order_id: int | None = None,
        *,
        client_order_id: str | None = None,
        price: str | None = None,
        qty: str | None = None,
    ) -> dict[str, Any]:
        return await self.request(
            "amend",
            market=market,
            order_id=order_id,
            client_order_id=client_order_id,
            price=price,
            qty=qty,
        )

    async def cancel_all(self, market: str | None = None) -> dict[str, Any]:
        return await self.request("cancel_all", market=market)

    async def orders(self, market: str | None = None) -> list[dict[str, Any]]:
        return list((await self.request("orders", market=market))["orders"])

    async def fills(
        self, market: str | None = None, *, after: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """One page: ``{"fills": [...], "next": cursor or None, ...}``."""
        return await self.request("fills", market=market, after=after, limit=limit)

    async def book(self, market: str, depth: int | None = None) -> dict[str, Any]:
        return await self.request("book", market=market, depth=depth)

    async def subscribe(self, channels: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("subscribe", channels=channels)

    async def unsubscribe(self, channels: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("unsubscribe", channels=channels)

    # -- streams ---------------------------------------------------------------------------------

    async def _open(self, key: tuple[str, str | None]) -> tuple[StreamQueue, dict[str, Any]]:
        if key in self._streams:
            raise ValueError(f"already streaming {key}")
        queue = self._streams[key] = StreamQueue(self._stream_queue)
        channel: dict[str, Any] = {"name": key[0]}
        if key[1] is not None:
            channel["market"] = key[1]
        try:
            await self.subscribe([channel])
        except BaseException:
            del self._streams[key]
            raise
        return queue, channel

    def _detacher(self, key: tuple[str, str | None], channel: dict[str, Any]) -> Any:
        async def detach() -> None:
            queue = self._streams.pop(key, None)
            if queue is None:
                return
            queue.close()
            if self.closed_reason is None:
                with contextlib.suppress(Disconnected):  # else nothing is left to unsubscribe
                    await self.unsubscribe([channel])

        return detach

    @asynccontextmanager
    async def book_stream(self, market: str) -> AsyncIterator[BookStream]:
        """Subscribe to ``market``'s book; iterate the stream for :class:`BookView`."""
        key = ("book", market)
        queue, channel = await self._open(key)
        stream = BookStream(
            market, queue, lambda: self._resubscribe(channel), self._detacher(key, channel)
        )
        async with stream:
            yield stream

    @asynccontextmanager
    async def trades_stream(self, market: str) -> AsyncIterator[TradeStream]:
        """Subscribe to ``market``'s trades; iterate the stream for :class:`Trade`."""
        key = ("trades", market)
        queue, channel = await self._open(key)
        stream = TradeStream(
            market, queue, lambda: self._resubscribe(channel), self._detacher(key, channel)
        )
        async with stream:
            yield stream

    @asynccontextmanager
    async def user_stream(self, market: str | None = None) -> AsyncIterator[UserStream]:
        """Subscribe to the caller's own events (all markets, or one)."""
        key = ("user", market)
        queue, channel = await self._open(key)
        stream = UserStream(queue, lambda: self._resubscribe(channel), self._detacher(key, channel))
        async with stream:
            yield stream

    async def _resubscribe(self, channel: dict[str, Any]) -> None:
        await self.subscribe([channel])


async def _check_certificate(url: str, context: ssl.SSLContext) -> None:
    """Complete one TLS handshake with the gateway, then close it.

    trio-websocket 0.12 reports a handshake that fails (an untrusted or wrong
    certificate) only as a timeout once ``connect_timeout`` has passed;
    this reports it at once, as :class:`shard.node.tls.HandshakeFailed` (an
    OSError) naming the reason, for the cost of one more handshake per connection.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        with trio.fail_after(_CHECK_TIMEOUT_S):
            tcp = await trio.open_tcp_stream(host, parts.port or 443)
            stream = await open_client_stream(tcp, context, host)
    except trio.TooSlowError as exc:  # a stalled gateway: a connection failure like the others
        raise HandshakeFailed(f"TLS handshake with {host}: no answer within "
                              f"{_CHECK_TIMEOUT_S:g} s") from exc  # fmt: skip
    await trio.aclose_forcefully(stream)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        else:
            found.append(exc)
    return found


@asynccontextmanager
async def open_client(
    url: str,
    *,
    api_key: str | None = None,
    stream_queue: int = STREAM_QUEUE,
    ca_file: str | None = None,
) -> AsyncIterator[GatewayClient]:
    """Connect (and authenticate when ``api_key`` is given); closes on exit.

    For a wss:// URL the gateway's certificate is verified against ``ca_file``
    (or the system trust store); ``ca_file`` with a ws:// URL is a ValueError.
    A bad ``ca_file`` raises :class:`shard.node.tls.TlsError`.

    An exception from the block (or the connection) comes out as itself, not
    wrapped in an exception group, when it is the only one.
    """
    secure = url.lower().startswith("wss:")
    if ca_file is not None and not secure:
        raise ValueError(f"a CA file is for wss:// URLs, not {url!r}")
    ssl_context = websocket_client_context(ca_file) if secure else None
    if ssl_context is not None:
        await _check_certificate(url, ssl_context)
    opened: list[WebSocketConnection] = []
    try:
        async with (
            open_websocket_url(
                url,
                ssl_context=ssl_context,
                connect_timeout=CONNECT_TIMEOUT_S,
                max_message_size=CLIENT_MAX_MESSAGE,
                message_queue_size=64,
            ) as ws,
            trio.open_nursery() as nursery,
        ):
            opened.append(ws)
            client = GatewayClient(ws, stream_queue=stream_queue)
            nursery.start_soon(client.run_reader)
            if api_key is not None:
                await client.auth(api_key)
            yield client
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
        if len(real) == 1:
            raise real[0] from None
        raise
    finally:
        # trio-websocket 0.12 does not release the socket when the peer closed first
        for ws in opened:
            await ws._close_stream()

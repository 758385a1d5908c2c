"""One client connection: its reader, sender, heartbeat and per-market lanes.

The session owns three tasks plus its lanes, all in one nursery:

* the reader drains ``get_message()`` continuously (trio-websocket stops
  answering pings when its receive queue is full), checks size and rate, and
  answers connection-level ops (``auth``, ``ping``, ``markets``,
  ``subscribe``, ``unsubscribe``) inline; market requests go to lanes;
* the sender writes the :class:`~gateway.outbox.Outbox` to the socket (the
  only task that sends data frames);
* the heartbeat pings every ``ping_interval`` and closes a connection from
  which nothing (not a frame, not a pong) was heard for ``idle_timeout``.

When any of them ends the connection, the nursery is cancelled and the
session unsubscribes from every feed on its way out.
"""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from gateway import metrics
from gateway.coalesce import send_messages, supported
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from gateway.lanes import Job, Lanes, fills_limit
from gateway.outbox import Outbox
from gateway.ratelimit import TokenBucket
from gateway.routing import Market
from gateway.wire import (
    COMMANDS,
    QUERIES,
    Amend,
    Auth,
    Book,
    Cancel,
    CancelAll,
    Channel,
    Fills,
    FrameError,
    Markets,
    NewOrder,
    Orders,
    Ping,
    Request,
    Subscribe,
    Unsubscribe,
    decode,
    encode,
    engine_command,
    reply_error,
    reply_ok,
)
from shard.observability import get_logger

SLOW_CONSUMER = encode({"channel": "system", "type": "slow_consumer"})
CLOSE_SLOW = (1008, "slow consumer")
CLOSE_IDLE = (1001, "idle timeout")
CLOSE_REVOKED = (1008, "api key revoked")
# Queued messages written to the socket at once at most (while being written they no longer
# count towards the outbox limit, so a connection may hold this many beyond it).
_SEND_BATCH = 256


class Session:
    """The state of one authenticated-or-not client connection."""

    def __init__(self, ws: WebSocketConnection, gateway: GatewayContext) -> None:
        self.ws = ws
        self.gw = gateway
        self.id = gateway.next_connection_id()
        self.user: str | None = None
        self.settings = gateway.settings
        self.outbox = Outbox(self.settings.outbound_buffer, self.settings.outbound_buffer_chars)
        self.bucket = TokenBucket(
            self.settings.rate_per_second, self.settings.rate_burst, trio.current_time()
        )
        self.channels: set[tuple[str, str | None]] = set()
        self.log = get_logger("gateway.session", gateway=gateway.name, conn=self.id)
        self._last_heard = trio.current_time()
        self._close: tuple[int, str] = (1000, "bye")
        self._nursery: trio.Nursery | None = None
        self._lanes: Lanes | None = None
        self._slow = False
        self.key_ids: set[str] = set()  # the keys it authenticated with

    # -- life cycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes, then unsubscribe and close the socket."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._lanes = Lanes(
                    nursery,
                    self.settings.max_pending_per_market,
                    self.settings.request_timeout_seconds,
                    self.log,
                )
                nursery.start_soon(self._send_loop)
                nursery.start_soon(self._heartbeat)
                await self._read_loop()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None  # nothing may be started in it any more
            for feed in self.gw.feeds.values():
                feed.remove_all(self)
            for key_id in self.key_ids:
                self.gw.release_key(key_id, self)
        with trio.move_on_after(self.settings.slow_consumer_grace_seconds):
            await self.ws.aclose(*self._close)
        # trio-websocket 0.12 leaves the socket open after closing a connection itself
        # (a message over max_message_size: close code 1009); make sure it is released.
        await self.ws._close_stream()

    def _end(self, code: int, reason: str) -> None:
        self._close = (code, reason)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def push(self, message: str) -> None:
        """Queue a frame for the client (replies and stream messages alike); never blocks."""
        if not self.outbox.push(message) and not self._slow and self._nursery is not None:
            self._slow = True
            self.gw.stats.slow_consumers += 1
            metrics.SLOW_CONSUMERS.inc()
            self.log.warning("slow consumer; closing", buffer=self.outbox.limit)
            self._nursery.start_soon(self._slow_consumer_deadline)

    async def _slow_consumer_deadline(self) -> None:
        await trio.sleep(self.settings.slow_consumer_grace_seconds)
        self.log.warning("slow consumer did not take its notice in time")
        self._end(*CLOSE_SLOW)

    async def _send_loop(self) -> None:
        ws = self.ws
        coalesce = supported(ws)
        while True:
            messages = await self.outbox.get_many(_SEND_BATCH if coalesce else 1)
            if messages is None:  # overflowed: tell the client why, then close
                with contextlib.suppress(ConnectionClosed):  # it is gone either way
                    await ws.send_message(SLOW_CONSUMER)
                self._end(*CLOSE_SLOW)
                return
            try:
                if len(messages) == 1:
                    await ws.send_message(messages[0])
                else:
                    await send_messages(ws, messages)
            except ConnectionClosed:
                self._end(1000, "closed")
                return

    async def _heartbeat(self) -> None:
        interval = self.settings.ping_interval_seconds
        idle = self.settings.idle_timeout_seconds
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(idle):
                try:
                    await self.ws.ping()
                except ConnectionClosed:
                    return
                self._last_heard = trio.current_time()
            if trio.current_time() - self._last_heard >= idle:
                self.gw.stats.idle_closed += 1
                self.log.info("idle timeout; closing")
                self._end(*CLOSE_IDLE)
                return

    async def _read_loop(self) -> None:
        while True:
            try:
                frame = await self.ws.get_message()
            except ConnectionClosed:
                return
            self._last_heard = trio.current_time()
            self.handle_frame(frame)

    # -- requests --------------------------------------------------------------------------------

    def handle_frame(self, frame: str | bytes) -> None:
        """Answer or dispatch one frame; every frame gets exactly one reply."""
        started = trio.current_time()
        limit = self.settings.max_frame_bytes
        size = len(frame) if isinstance(frame, bytes) or len(frame) * 4 <= limit else None
        if size is None:
            size = len(frame.encode()) if isinstance(frame, str) else len(frame)
        if size > limit:
            self.bucket.try_take(started)  # every frame costs a token, an oversized one too
            self._answer_error(None, "frame", GatewayError("too_large", _too_large(limit)))
            return
        try:
            request = decode(frame)
        except FrameError as exc:
            self.bucket.try_take(started)
            self._answer_error(exc.request_id, "invalid", exc.error)
            return
        if not self.bucket.try_take(started):
            error = GatewayError("rate_limited", "Too many requests; slow down.")
            self._answer_error(request.id, request.op, error)
            return
        try:
            self._dispatch(request, started)
        except GatewayError as exc:
            self._answer_error(request.id, request.op, exc)
        except Exception as exc:  # a bug: answer, log loudly, keep the connection
            self.log.error("request failed", op=request.op, exc_info=exc)
            self._answer_error(request.id, request.op, GatewayError("internal", "Internal error."))

    def _answer_error(self, request_id: Any, op: str, error: GatewayError) -> None:
        metrics.answered(op, error.code)
        self.push(reply_error(request_id, error))

    def _answer(self, request: Request, result: dict[str, Any], started: float) -> None:
        metrics.answered(request.op, "ok", trio.current_time() - started)
        self.push(reply_ok(request.id, result))

    def _dispatch(self, request: Request, started: float) -> None:
        body = request.body
        if isinstance(body, Ping):
            now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
            self._answer(request, {"time": now.replace("+00:00", "Z")}, started)
        elif isinstance(body, Markets):
            self._answer(request, {"markets": self._markets()}, started)
        elif isinstance(body, Auth):
            self._answer(request, self._auth(body), started)
        elif isinstance(body, Subscribe):
            self._answer(request, {"channels": self._subscribe(body.channels)}, started)
            self._start_streams(body.channels)
        elif isinstance(body, Unsubscribe):
            self._answer(request, {"channels": self._unsubscribe(body.channels)}, started)
        else:
            self._route(request, body, started)

    def _markets(self) -> list[dict[str, str]]:
        return [
            {
                "market": m.name,
                "tick_size": m.tick_size,
                "lot_size": m.lot_size,
                "status": "open" if self.gw.feeds[m.name].healthy else "unavailable",
            }
            for m in self.gw.router.markets
        ]

    def _auth(self, body: Auth) -> dict[str, Any]:
        record = self.gw.keys.check(body.api_key)
        if record is None:
            raise GatewayError("unauthenticated", "The API key is unknown or revoked.")
        user = record.user
        if self.user is not None and user != self.user:
            raise GatewayError(
                "forbidden", "This connection is already authenticated as another user."
            )
        if self.user is None:
            self.log.info("authenticated", user=user, key_id=record.key_id)
        self.user = user
        self.key_ids.add(record.key_id)
        self.gw.hold_key(record.key_id, self)
        return {"user": user}

    def key_revoked(self) -> None:
        """The key this connection authenticated with was revoked: close it."""
        self.log.info("closing: key revoked", user=self.user)
        self._end(*CLOSE_REVOKED)

    def _need_user(self, body: Any) -> str:
        if self.user is None:
            raise GatewayError("unauthenticated", "Authenticate first (op auth).")
        claimed = getattr(body, "user", None)
        if claimed is not None and claimed != self.user:
            raise GatewayError("forbidden", "A request may only act for the authenticated user.")
        return self.user

    def _route(self, request: Request, body: Any, started: float) -> None:
        user: str | None = None
        if not isinstance(body, Book):
            user = self._need_user(body)
        markets: list[Market] = self.gw.router.targets(body.market)
        fanout = body.market is None
        commands: dict[str, dict[str, Any]] = {}
        for market in markets:
            commands[market.name] = self._engine_request(body, user, market.name)
        job = Job(
            request_id=request.id,
            op=request.op,
            is_command=type(body) in COMMANDS,
            user=user,
            commands=commands,
            fanout=fanout,
            reply=self.push,
            started=started,
            fills_limit=fills_limit(body) if isinstance(body, Fills) else None,
        )
        assert self._lanes is not None
        self._lanes.submit(job, markets)

    @staticmethod
    def _engine_request(body: Any, user: str | None, market: str) -> dict[str, Any]:
        if isinstance(body, NewOrder | Cancel | Amend | CancelAll):
            assert user is not None
            command = engine_command(body, user)
            command["market"] = market
            return command
        kind = QUERIES[type(body)]
        query: dict[str, Any] = {"type": kind, "market": market}
        if isinstance(body, Orders | Fills):
            query["user"] = user
        if isinstance(body, Fills):
            if body.after is not None:
                query["after"] = body.after
            query["limit"] = fills_limit(body)
        if isinstance(body, Book) and body.depth is not None:
            query["depth"] = body.depth
        return query

    # -- subscriptions ---------------------------------------------------------------------------

    def _check_channels(self, channels: tuple[Channel, ...]) -> None:
        for channel in channels:
            if channel.name == "user" and self.user is None:
                raise GatewayError(
                    "unauthenticated", "The user channel needs an authenticated connection."
                )
            if channel.user is not None and channel.user != self.user:
                raise GatewayError("forbidden", "Only your own user channel can be subscribed.")
            if channel.market is not None:
                self.gw.router.resolve(channel.market)

    def _subscribe(self, channels: tuple[Channel, ...]) -> list[dict[str, Any]]:
        self._check_channels(channels)
        return [_channel_wire(c) for c in channels]

    def _start_streams(self, channels: tuple[Channel, ...]) -> None:
        """Register with the feeds (after the reply is queued, so a snapshot follows it)."""
        for channel in channels:
            self.channels.add((channel.name, channel.market))
            if channel.name == "book":
                assert channel.market is not None
                self.gw.feeds[channel.market].add_book(self)
            elif channel.name == "trades":
                assert channel.market is not None
                self.gw.feeds[channel.market].add_trades(self)
            else:
                assert self.user is not None
                for market in self.gw.router.targets(channel.market):
                    self.gw.feeds[market.name].add_user(self, self.user)

    def _unsubscribe(self, channels: tuple[Channel, ...]) -> list[dict[str, Any]]:
        self._check_channels(channels)
        for channel in channels:
            self.channels.discard((channel.name, channel.market))
            if channel.name == "book":
                assert channel.market is not None
                self.gw.feeds[channel.market].remove_book(self)
            elif channel.name == "trades":
                assert channel.market is not None
                self.gw.feeds[channel.market].remove_trades(self)
            else:
                assert self.user is not None
                for market in self.gw.router.targets(channel.market):
                    still = ("user", None) in self.channels or (
                        "user",
                        market.name,
                    ) in self.channels
                    if not still:
                        self.gw.feeds[market.name].remove_user(self, self.user)
        return [_channel_wire(c) for c in channels]


def _channel_wire(channel: Channel) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": channel.name}
    if channel.market is not None:
        wire["market"] = channel.market
    return wire


def _too_large(limit: int) -> str:
    return f"The frame is larger than the limit of {limit} bytes."

"""A subscription to one replica group's applied commands, surviving replica failures.

It reads from one replica at a time (followers preferred, so the stream does
not load the leader); when that replica fails it resubscribes to the next one
from the seq after the last item it returned, so the caller sees every seq
exactly once and in order. ``SubscriptionGone`` means no reachable replica
still keeps that seq: the caller must resync from a query. With a TLS
context (:mod:`shard.node.tls`) each connection is TLS.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Callable
from typing import Self

import trio

from config.load import parse_address
from shard.node import protocol
from shard.node.api import AppliedItem, ShardError, SubscriptionGone, Unavailable
from shard.node.framing import MAX_REPLY_FRAME, FrameDecoder, FrameError, encode_frame
from shard.node.tls import open_client_stream

_READ_SIZE = 1 << 18
_CONNECT_TIMEOUT_S = 1.0
_BACKOFF_S = 0.05


class Subscription:
    """Async iterator of :class:`AppliedItem`; also an async context manager."""

    def __init__(
        self,
        replicas: list[tuple[str, str]],
        from_seq: int,
        *,
        retry_for: float = 5.0,
        opening: Callable[[str], bytes | None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.replicas = replicas
        self._opening = opening  # replica name -> the frame proving the cluster secret
        self._tls = tls  # None: plain TCP
        self.next_seq = from_seq
        self.retry_for = retry_for
        self.replica: str | None = None  # the one currently streaming
        self._stream: trio.abc.Stream | None = None
        self._decoder = FrameDecoder(max_frame=MAX_REPLY_FRAME)
        self._items: deque[AppliedItem] = deque()
        self._turn = 0
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def aclose(self) -> None:
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await trio.aclose_forcefully(stream)
        self.replica = None

    async def __anext__(self) -> AppliedItem:
        if self._closed:
            raise StopAsyncIteration
        while not self._items:
            if self._stream is None:
                await self._open()
                continue
            try:
                data = await self._stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                await self._drop()
                continue
            self._decoder.feed(data)
            try:
                for message in self._decoder.messages():
                    self._take(message)
            except (FrameError, ShardError, KeyError, TypeError, ValueError):
                if self._items:
                    break  # deliver what is good; the broken link is dropped below
                await self._drop()
        item = self._items.popleft()
        self.next_seq = item.seq + 1
        return item

    def _take(self, message: protocol.Message) -> None:
        if message.get("t") == "error":
            protocol.raise_for_error(message)
        if message.get("t") != "applied":
            return
        expected = self.next_seq + len(self._items)
        for item in protocol.applied_items(message):
            if item.seq < expected:
                continue  # already delivered before a resubscription
            if item.seq != expected:
                raise ShardError(f"gap in stream: expected seq {expected}, got {item.seq}")
            self._items.append(item)
            expected += 1

    async def _open(self) -> None:
        """Subscribe at the next replica that accepts; raises when none does in time."""
        deadline = trio.current_time() + self.retry_for
        problems: list[str] = []
        while True:
            name, address = self.replicas[self._turn % len(self.replicas)]
            self._turn += 1
            try:
                await self._try(name, address)
                return
            except SubscriptionGone:
                raise
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, ShardError) as exc:
                problems.append(f"{name}: {exc}")
                await self._drop()
            if trio.current_time() >= deadline:
                raise Unavailable("; ".join(problems[-len(self.replicas) :]))
            if self._turn % len(self.replicas) == 0:
                await trio.sleep(_BACKOFF_S)

    async def _try(self, name: str, address: str) -> None:
        host, port = parse_address(address)
        self._decoder = FrameDecoder(max_frame=MAX_REPLY_FRAME)
        with trio.fail_after(_CONNECT_TIMEOUT_S):
            tcp = await trio.open_tcp_stream(host, port)
            self._stream = tcp
            if self._tls is not None:
                self._stream = await open_client_stream(tcp, self._tls, host)
            opening = self._opening(name) if self._opening is not None else None
            await self._stream.send_all(
                (opening or b"")
                + encode_frame({"t": "subscribe", "rid": 0, "from_seq": self.next_seq})
            )
            while True:
                data = await self._stream.receive_some(_READ_SIZE)
                if not data:
                    raise trio.BrokenResourceError(f"{name} closed the connection")
                self._decoder.feed(data)
                for message in self._decoder.messages():
                    if message.get("rid") == 0:
                        protocol.raise_for_error(message)
                        self.replica = name
                    else:
                        self._take(message)
                if self.replica is not None:
                    return

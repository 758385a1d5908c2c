"""``ReplicaConnection``: one multiplexed shard-protocol connection to one replica.

Any number of concurrent requests share it, told apart by request id. It
runs no background task: the task waiting for a reply reads the connection
on behalf of every waiter (one reader at a time; when it has its own reply it
hands the reading over to another waiter). Writes are coalesced the same
way: concurrent requests queue their frames and whichever task finds the
writer idle flushes them all in one write. :class:`shard.node.client.ShardClient`
keeps one per replica. With a TLS context (:mod:`shard.node.tls`) the
connection is TLS, its handshake done while connecting.
"""

from __future__ import annotations

import itertools
import ssl
from collections import deque
from collections.abc import Callable

import trio

from config.load import parse_address
from shard.node import protocol
from shard.node.framing import MAX_REPLY_FRAME, FrameDecoder, encode_frame, encode_frames
from shard.node.tls import open_client_stream

_READ_SIZE = 1 << 18
_CONNECT_TIMEOUT_S = 1.0


class ConnectFailed(Exception):
    """Could not reach the replica; nothing was sent."""


class ConnectionLost(Exception):
    """The connection broke after the request may have been sent."""


class _Slot:
    """One request's place for its reply.

    The slots of one :meth:`ReplicaConnection.request_many` call share an
    ``owner`` (the first slot), which counts the replies still missing and holds
    the one event its waiting task sleeps on; a lone request owns itself.
    """

    __slots__ = ("gone", "owner", "pending", "reply", "wake")

    def __init__(self, owner: _Slot | None = None, pending: int = 1) -> None:
        self.reply: protocol.Message | None = None
        self.owner: _Slot = self if owner is None else owner
        self.pending = pending  # replies still missing (meaningful on the owner)
        # Only the owner's event is ever waited on or set (via ``slot.owner``).
        self.wake: trio.Event = trio.Event() if owner is None else owner.wake
        self.gone = False  # its waiter left (cancelled)


class ReplicaConnection:
    """One multiplexed connection to one replica (see the module docstring)."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        gather_writes: bool = False,
        opening: Callable[[str], bytes | None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self._opening = opening  # replica name -> the frame proving the cluster secret
        self._tls = tls  # None: plain TCP
        self._gather_writes = gather_writes  # see ShardClient
        self._stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        self._connect_lock = trio.Lock()
        self._decoder = FrameDecoder(max_frame=MAX_REPLY_FRAME)
        self._waiting: dict[int, _Slot] = {}
        self._unanswered: deque[_Slot] = deque()  # hand-over candidates, oldest first
        self._rids = itertools.count(1)
        self._reading = False
        self._writing = False
        self._outbox: list[bytes] = []
        self.failure: Exception | None = None

    async def _connect(self) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
        if self._stream is not None and self.failure is None:
            return self._stream  # fast path: no lock once connected
        async with self._connect_lock:
            if self.failure is not None:
                raise ConnectFailed(str(self.failure))
            if self._stream is None:
                host, port = parse_address(self.address)
                try:
                    with trio.fail_after(_CONNECT_TIMEOUT_S):
                        tcp = await trio.open_tcp_stream(host, port)
                        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = tcp
                        if self._tls is not None:
                            stream = await open_client_stream(tcp, self._tls, host)
                        opening = self._opening(self.name) if self._opening else None
                        if opening is not None:
                            await stream.send_all(opening)
                        self._stream = stream
                except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                    raise ConnectFailed(f"{self.name} at {self.address}: {exc}") from exc
            return self._stream

    async def request(self, message: protocol.Message) -> protocol.Message:
        """Send ``message`` (its ``rid`` is set here) and wait for the reply."""
        stream = await self._connect()
        rid = next(self._rids)
        message["rid"] = rid
        slot = _Slot()
        self._waiting[rid] = slot
        self._unanswered.append(slot)
        try:
            self._outbox.append(encode_frame(message))
            if not self._writing:
                await self._flush(stream)
            await self._wait_for(stream, slot)
            assert slot.reply is not None
            return slot.reply
        finally:
            slot.gone = True
            del self._waiting[rid]

    async def request_many(self, messages: list[protocol.Message]) -> list[protocol.Message]:
        """Send ``messages`` (their ``rid`` set here) in one write; their replies, in order.
        One task waits for all of them (one wake-up, not one task per request)."""
        slots: list[_Slot] = []
        await self._exchange_many(messages, slots)
        return [slot.reply for slot in slots]  # type: ignore[misc]

    async def request_many_partial(
        self, messages: list[protocol.Message], batch: bool = False
    ) -> list[protocol.Message | None]:
        """Like :meth:`request_many`, but if the connection breaks after sending, the
        replies that came (``None`` for the others). :class:`ConnectFailed`: nothing sent.
        ``batch``: submits sent as one ``batch`` frame, accepted or refused together."""
        slots: list[_Slot] = []
        try:
            await self._exchange_many(messages, slots, batch)
        except ConnectionLost:
            if not slots:
                raise
        return [slot.reply for slot in slots]

    async def _exchange_many(
        self, messages: list[protocol.Message], slots: list[_Slot], batch: bool = False
    ) -> None:
        """Send ``messages`` in one write and wait for their replies into ``slots``."""
        if not messages:
            return
        stream = await self._connect()
        rids = self._rids
        waiting = self._waiting
        owner = _Slot(pending=len(messages))
        slots.append(owner)
        slots.extend(_Slot(owner) for _ in range(len(messages) - 1))
        keys: list[int] = []
        try:
            for message, slot in zip(messages, slots, strict=True):
                rid = next(rids)
                message["rid"] = rid
                waiting[rid] = slot
                keys.append(rid)
            self._unanswered.extend(slots)
            batched = [{"t": "batch", "items": messages}] if batch else messages
            self._outbox.append(encode_frames(batched))
            if not self._writing:
                await self._flush(stream)
            await self._wait_for(stream, owner)
        finally:
            for slot in slots:
                slot.gone = True
            for rid in keys:
                del waiting[rid]

    async def _flush(self, stream: trio.abc.Stream) -> None:
        self._writing = True
        try:
            if self._gather_writes:
                await trio.lowlevel.cancel_shielded_checkpoint()
            while self._outbox:
                data = b"".join(self._outbox)
                self._outbox.clear()
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            # The replica went away mid-write: the caller retries elsewhere.
            lost = ConnectionLost(f"{self.name}: {exc!r}")
            self._fail(lost)
            raise lost from exc
        except BaseException as exc:  # a half-written frame leaves the stream unusable
            self._fail(exc if isinstance(exc, Exception) else ConnectionLost("cancelled mid-write"))
            raise
        finally:
            self._writing = False

    async def _read_once(self, stream: trio.abc.Stream) -> None:
        self._reading = True
        try:
            try:
                data = await stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._fail(exc)
                return
            if not data:
                self._fail(ConnectionLost(f"{self.name} closed the connection"))
                return
            self._decoder.feed(data)
            try:
                for reply in self._decoder.messages():
                    if not isinstance(reply, dict):
                        continue  # not a reply at all: nobody waits for it
                    rid = reply.get("rid")
                    if rid is None and reply.get("code") == protocol.UNAUTHORIZED:
                        why = reply.get("message")
                        self._fail(ConnectionLost(f"{self.name} refused this client: {why}"))
                        return
                    slot = self._waiting.get(rid) if isinstance(rid, int) else None
                    if slot is not None and slot.reply is None:
                        slot.reply = reply
                        owner = slot.owner
                        owner.pending -= 1
                        if not owner.pending:
                            owner.wake.set()
            except Exception as exc:  # a replica sending garbage: drop this connection
                self._fail(exc)
        finally:
            # After dispatching, so a waiter whose reply just came is not picked.
            self._reading = False
            self._hand_over()

    async def _wait_for(self, stream: trio.abc.Stream, owner: _Slot) -> None:
        """Until every reply ``owner`` counts is in: sleep while another task reads, else read."""
        while owner.pending:
            if self.failure is not None:
                raise ConnectionLost(str(self.failure))
            if self._reading:
                await owner.wake.wait()
                owner.wake = trio.Event()
            else:
                await self._read_once(stream)

    def _hand_over(self) -> None:
        """Wake one waiter still without a reply; it loops and becomes the reader."""
        unanswered = self._unanswered
        while unanswered:
            slot = unanswered[0]
            if slot.reply is None and not slot.gone:
                slot.owner.wake.set()
                return
            unanswered.popleft()

    def _fail(self, exc: Exception) -> None:
        if self.failure is None:
            self.failure = exc
        stream = self._stream
        if stream is not None:
            tcp = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
            tcp.socket.close()  # synchronous: nobody may use it any more
        for slot in self._waiting.values():
            slot.owner.wake.set()

    @property
    def usable(self) -> bool:
        return self.failure is None

    async def aclose(self) -> None:
        self._fail(ConnectionLost("closed by the client"))
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)

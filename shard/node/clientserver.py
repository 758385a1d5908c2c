"""The shard client protocol server: one TCP listener, framed msgpack requests.

Each connection has a reader (this task) and a writer task draining a bounded
reply queue into one socket write per turn. Requests are handed to the
:class:`ReplicaService` (the node runtime) with a reply callback, not a task
per request: at 100k submits per second a task each would cost more than the
command itself. A client that does not read its replies (or its
subscription) fast enough overflows its queue and is disconnected; it can
reconnect and resubscribe from the last seq it saw.

A malformed frame closes that connection only; a malformed request inside a
good frame gets a ``bad_request`` error reply and the connection stays open.

With a TLS context (:mod:`shard.node.tls`) every connection first completes a
mutual TLS handshake, in its own task; one that fails (no client certificate,
one from another CA, not TLS) closes that connection only and is counted.
"""

from __future__ import annotations

import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import trio

from config.load import parse_address
from shard.node import protocol
from shard.node.authentication import CLIENT, Authenticator
from shard.node.framing import Encoded, FrameDecoder, FrameError, encode_frames
from shard.node.tls import ACCEPT_HANDSHAKE_S, HandshakeFailed, accept_stream
from shard.observability import get_logger

Reply = Callable[[protocol.Message], None]

_READ_SIZE = 1 << 18
_QUEUE = 65536  # replies + pushed items a connection may have waiting


class Subscriber(Protocol):
    def push(self, message: protocol.Message | Encoded) -> None: ...


class ReplicaService(Protocol):
    """What the node runtime offers the client server."""

    def submit(self, client: str, req: int, ack: int, cmd: bytes, reply: Reply) -> None: ...

    def submit_batch(self, items: list[tuple[str, int, int, bytes, Reply]]) -> None:
        """Submits accepted all together, in order, or all refused with one error."""
        ...

    def register(self, label: str, reply: Reply) -> None:
        """Open a client session; the reply carries its id (``registered``)."""
        ...

    def query(self, cmd: bytes, reply: Reply) -> None: ...

    def subscribe(self, from_seq: int, subscriber: Subscriber, reply: Reply) -> None:
        """Reply ``ok`` (or an error), then push applied items from ``from_seq`` on."""
        ...

    def unsubscribe(self, subscriber: Subscriber) -> None: ...

    def status(self) -> protocol.Message: ...

    async def admin(self, request: protocol.Message) -> protocol.Message: ...


class ClientConnection:
    """One client's connection: a bounded outbound queue and its writer.

    The queue is a plain deque plus an event that wakes the writer: pushing a
    reply is on the per-command path, and a deque append costs a fraction of
    a memory-channel send.
    """

    def __init__(self, stream: trio.abc.Stream, peer: str) -> None:
        self.stream = stream
        self.peer = peer
        self.scope = trio.CancelScope()
        self._queue: deque[protocol.Message | Encoded] = deque()
        self._ready = trio.Event()  # set when the queue has something for the writer
        self._closed = False
        self.overflowed = False
        self.nursery: trio.Nursery | None = None  # runs this connection's admin requests

    def push(self, message: protocol.Message | Encoded) -> None:
        """Queue a message (or an already encoded frame); a full queue means a slow
        reader, which is disconnected."""
        if self.overflowed or self._closed:
            return  # closed: the connection finished; late replies have nobody to go to
        queue = self._queue
        if len(queue) >= _QUEUE:
            self.overflowed = True
            self.scope.cancel()
            return
        queue.append(message)
        ready = self._ready
        if not ready.is_set():
            ready.set()

    def replier(self, rid: Any) -> Reply:
        def reply(message: protocol.Message) -> None:
            message["rid"] = rid
            self.push(message)

        return reply

    async def write_loop(self) -> None:
        queue = self._queue
        while True:
            while not queue:
                self._ready = trio.Event()
                await self._ready.wait()
            count = min(len(queue), 4096)
            popleft = queue.popleft
            await self.stream.send_all(encode_frames([popleft() for _ in range(count)]))

    def close(self) -> None:
        self._closed = True
        self._queue.clear()


class ClientServer:
    """Serves the shard client protocol on ``listen`` for one replica."""

    def __init__(
        self,
        service: ReplicaService,
        listen: str,
        *,
        node: str = "",
        auth: Authenticator | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.service = service
        self.listen = listen
        self.port = 0
        self.node = node
        self.auth = auth  # None: any connection is served
        self.tls = tls  # mutual TLS (requires a client certificate); None: plain TCP
        self.refused = 0  # connections refused for not proving the cluster secret
        self.tls_refused = 0  # connections whose TLS handshake failed
        self._log = get_logger("shard.node.clientserver", node=node)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept clients until cancelled; reports the bound port. Owns every connection."""
        host, port = parse_address(self.listen)
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, tcp: trio.SocketStream) -> None:
        try:
            peer = "{}:{}".format(*tcp.socket.getpeername()[:2])
        except OSError:
            peer = "?"
        stream: trio.abc.Stream = tcp
        if self.tls is not None:
            try:
                with trio.fail_after(ACCEPT_HANDSHAKE_S):
                    stream = await accept_stream(tcp, self.tls)
            except (HandshakeFailed, trio.TooSlowError) as exc:
                self._refused_handshake(peer, str(exc) or type(exc).__name__)
                return  # accept_stream closed the connection
        conn = ClientConnection(stream, peer)
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    conn.nursery = nursery
                    nursery.start_soon(conn.write_loop)
                    await self._read_loop(conn)
                    nursery.cancel_scope.cancel()
            if conn.overflowed:
                self._log.warning("slow client disconnected", peer=peer)
        except* FrameError as group:
            self._log.warning(
                "malformed frame from client", peer=peer, error=str(group.exceptions[0])
            )
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except* Exception:
            # A bug triggered by one client must cost that connection only.
            self._log.exception("client connection failed", peer=peer)
        finally:
            self.service.unsubscribe(conn)
            conn.close()
            await trio.aclose_forcefully(stream)

    def _refused_handshake(self, peer: str, reason: str) -> None:
        self.tls_refused += 1
        if self.tls_refused % 1000 == 1:  # a flood of them must not flood the log
            self._log.warning(
                "refused client: TLS handshake failed",
                peer=peer,
                reason=reason,
                refused_total=self.tls_refused,
            )

    async def _read_loop(self, conn: ClientConnection) -> None:
        decoder = FrameDecoder()
        opened = self.auth is None
        while True:
            data = await conn.stream.receive_some(_READ_SIZE)
            if not data:
                return
            decoder.feed(data)
            for message in decoder.messages():
                if not opened:
                    if not await self._admit(conn, message):
                        return
                    opened = True
                    continue
                self._dispatch(conn, message)
                if conn.overflowed:
                    return

    async def _admit(self, conn: ClientConnection, opening: Any) -> bool:
        """Whether the connection's first frame proves the cluster secret; if not, the
        client is told why (code ``unauthorized``) and the connection ends."""
        assert self.auth is not None
        frame = opening if isinstance(opening, dict) and opening.get("t") == "auth" else None
        now_ms = time.time_ns() // 1_000_000
        refusal = self.auth.check(CLIENT, (self.node,), frame, now_ms)
        if refusal is None:
            return True
        self.refused += 1
        if self.refused % 1000 == 1:  # a flood of them must not flood the log
            self._log.warning(
                "refused unauthenticated client",
                peer=conn.peer,
                reason=refusal,
                refused_total=self.refused,
            )
        await conn.stream.send_all(encode_frames([protocol.error(protocol.UNAUTHORIZED, refusal)]))
        return False

    def _dispatch(self, conn: ClientConnection, message: Any) -> None:
        if type(message) is dict and message.get("t") == "batch":
            self._dispatch_batch(conn, message.get("items"))
            return
        if type(message) is dict and message.get("t") == "submit":
            # Fast path for a well-formed submit: the same field checks as
            # protocol.check_request (exact types, so no bools), without its calls.
            client, req = message.get("client"), message.get("req")
            ack, cmd = message.get("ack"), message.get("cmd")
            if (
                type(client) is str
                and type(req) is int
                and req > 0
                and type(ack) is int
                and type(cmd) is bytes
            ):
                self.service.submit(client, req, ack, cmd, conn.replier(message.get("rid")))
                return
        rid = message.get("rid") if isinstance(message, dict) else None
        try:
            kind, rid = protocol.check_request(message)
        except protocol.RequestError as exc:
            conn.replier(rid)(protocol.error(exc.code, str(exc)))
            return
        service = self.service
        if kind == "submit":
            service.submit(
                message["client"], message["req"], message["ack"], message["cmd"], conn.replier(rid)
            )
        elif kind == "register":
            service.register(message["client"], conn.replier(rid))
        elif kind == "query":
            service.query(message["cmd"], conn.replier(rid))
        elif kind == "subscribe":
            service.subscribe(message["from_seq"], conn, conn.replier(rid))
        elif kind == "status":
            conn.replier(rid)(service.status())
        else:
            assert conn.nursery is not None
            conn.nursery.start_soon(self._admin, conn, message, rid)

    def _dispatch_batch(self, conn: ClientConnection, items: Any) -> None:
        """``{"t": "batch", "items": [submit, ...]}``: one client's ordered submits, atomically.

        Each item is a complete submit request with its own ``rid`` and gets its
        own reply. They are accepted or refused together, so a refusal can never
        be followed by an applied successor from the same batch.
        """
        batch: list[tuple[str, int, int, bytes, Reply]] = []
        valid = type(items) is list and len(items) > 0
        for item in items if valid else ():
            try:
                kind, rid = protocol.check_request(item)
            except protocol.RequestError:
                kind = ""
            if kind != "submit":
                valid = False
                break
            batch.append((item["client"], item["req"], item["ack"], item["cmd"], conn.replier(rid)))
        if valid:
            self.service.submit_batch(batch)
            return
        # malformed: apply none, refuse every item that can be answered
        error = protocol.error(
            protocol.BAD_REQUEST, "a batch is a non-empty list of well-formed submit requests"
        )
        rids = [i.get("rid") for i in items if isinstance(i, dict)] if type(items) is list else []
        for rid in rids or [None]:
            conn.replier(rid)(dict(error))

    async def _admin(self, conn: ClientConnection, message: protocol.Message, rid: Any) -> None:
        try:
            reply = await self.service.admin(message)
        except Exception as exc:
            self._log.exception("admin action failed", action=message.get("action"))
            reply = protocol.error(protocol.INTERNAL, f"{type(exc).__name__}: {exc}")
        conn.replier(rid)(reply)

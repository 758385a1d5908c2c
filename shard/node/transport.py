"""Peer links between the replicas of one group: TCP, framed msgpack, lossy by design.

Each node dials one outbound TCP connection per peer and sends on it only;
what peers send arrives on the connections they dialed. Sending never
blocks: every peer has a bounded queue, and a message that does not fit is
dropped (Raft retransmits, so loss only costs time; blocking the consensus
loop on a slow peer would cost the whole group). A sender task drains its
queue into one socket write per turn, so many messages share a syscall.

Every connection starts with a handshake, ``{"t":"hello","cluster","name","to"}``
answered by ``{"t":"welcome"}`` or ``{"t":"refused","reason"}``. A node of
another cluster id, a dialer that claims our own name or a name not in our
peer set, or a second live connection claiming a name already connected, is
refused: two processes started with the same name must not both vote.

With TLS (``tls=(listener, dialer)`` contexts from :mod:`shard.node.tls`) a
link is mutual TLS, handshaken in the connection's own task before the hello,
and a hello is refused unless the dialer's certificate names the replica it
claims to be. A failed handshake closes that connection only.

    transport = PeerTransport(cluster_id, "a", "127.0.0.1:7001", {"b": "127.0.0.1:7002"},
                              deliver=on_message)   # on_message(src, payload), must not block
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve)
        transport.send("b", payload)            # any msgpack-able value but None

``deliver`` is called from the connection's reader, in arrival order: no
channel hand-off and no task switch per message (the replica runtime only
stamps the message and appends it to its inbox there).
"""

from __future__ import annotations

import contextlib
import os
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from config.load import parse_address
from shard.node.authentication import NONCE_BYTES, PEER, Authenticator
from shard.node.framing import FrameDecoder, FrameError, encode_frame
from shard.node.tls import HandshakeFailed, accept_stream, certificate_name, open_client_stream
from shard.observability import get_logger

_PING = None  # keepalive payload, never delivered
_KEEPALIVE_S = 0.5
_DEAD_AFTER_S = 3.0  # an inbound link silent this long may be replaced by a new one
_BACKOFF_MIN_S = 0.02
_BACKOFF_MAX_S = 0.5
_REFUSED_BACKOFF_S = 2.0
_CONNECT_TIMEOUT_S = 2.0
_READ_SIZE = 1 << 18


class HandshakeRefused(Exception):
    """The remote end refused our hello (wrong cluster, name clash)."""


@attrs.frozen
class PeerStatistics:
    connected: bool
    queued: int
    sent: int
    dropped: int
    last_error: str | None


@attrs.define
class _Peer:
    name: str
    address: str
    send: trio.MemorySendChannel[Any]
    receive: trio.MemoryReceiveChannel[Any]
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    connected: bool = False
    sent: int = 0
    dropped: int = 0
    last_error: str | None = None


@attrs.define
class _Inbound:
    stream: trio.abc.Stream
    last_seen: float


class PeerTransport:
    """Outbound peer links with bounded queues plus the listener for inbound ones."""

    def __init__(
        self,
        cluster_id: str,
        name: str,
        listen: str,
        peers: dict[str, str],
        *,
        deliver: Callable[[str, Any], None],
        queue_size: int = 4096,
        auth: Authenticator | None = None,
        tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.auth = auth  # a hello must prove the cluster secret (None: not required)
        self.tls = tls  # (listener, dialer) contexts for mutual TLS; None: plain TCP
        self.tls_refused = 0  # inbound connections whose TLS handshake failed
        self.name = name
        self.listen = listen
        self._queue_size = queue_size
        self._peers: dict[str, _Peer] = {}
        self._wanted = {k: v for k, v in peers.items() if k != name}
        self._inbound: dict[str, _Inbound] = {}
        self._nursery: trio.Nursery | None = None
        self._deliver = deliver
        self.port: int = 0
        self._log = get_logger("shard.node.transport", node=name)

    # -- sending ---------------------------------------------------------

    def send(self, dst: str, payload: Any) -> bool:
        """Queue ``payload`` for ``dst``; False when dropped (unknown peer, queue full)."""
        peer = self._peers.get(dst)
        if peer is None:
            return False
        try:
            peer.send.send_nowait(payload)
        except trio.WouldBlock:
            peer.dropped += 1
            return False
        return True

    def connected(self, dst: str) -> bool:
        peer = self._peers.get(dst)
        return peer is not None and peer.connected

    def statistics(self) -> dict[str, PeerStatistics]:
        return {
            name: PeerStatistics(
                connected=p.connected,
                queued=p.send.statistics().current_buffer_used,
                sent=p.sent,
                dropped=p.dropped,
                last_error=p.last_error,
            )
            for name, p in self._peers.items()
        }

    def set_peers(self, peers: dict[str, str]) -> None:
        """Change the peer set (membership change): start and stop dialers as needed."""
        self._wanted = {k: v for k, v in peers.items() if k != self.name}
        if self._nursery is not None:
            self._reconcile(self._nursery)

    def _reconcile(self, nursery: trio.Nursery) -> None:
        for name, peer in list(self._peers.items()):
            if self._wanted.get(name) != peer.address:
                peer.scope.cancel()
                del self._peers[name]
        for name, address in self._wanted.items():
            if name not in self._peers:
                send, receive = trio.open_memory_channel[Any](self._queue_size)
                peer = _Peer(name, address, send, receive)
                self._peers[name] = peer
                nursery.start_soon(self._dial_loop, peer)

    # -- serving ---------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for peers and keep dialing them until cancelled; reports the bound port.

        Owns every peer task; on cancellation all connections close.
        """
        host, port = parse_address(self.listen)
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._reconcile(nursery)
            nursery.start_soon(self._accept_loop, listeners, nursery)
            task_status.started(self.port)

    async def _accept_loop(
        self, listeners: list[trio.SocketListener], nursery: trio.Nursery
    ) -> None:
        await trio.serve_listeners(self._handle_inbound, listeners, handler_nursery=nursery)

    async def _handle_inbound(self, tcp: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        name: str | None = None
        stream: trio.abc.Stream = tcp
        try:
            if self.tls is not None:
                stream = await self._accept_tls(tcp)
            with trio.fail_after(_CONNECT_TIMEOUT_S):
                hello = await _read_one(stream, decoder)
            name = await self._admit(stream, hello)
            if name is None:
                return
            entry = self._inbound[name]
            deliver = self._deliver
            while True:
                # Frames that came with the hello are already buffered: deliver first.
                for payload in decoder.messages():
                    if payload is not _PING:
                        deliver(name, payload)
                data = await stream.receive_some(_READ_SIZE)
                if not data:
                    return
                entry.last_seen = trio.current_time()
                decoder.feed(data)
        except FrameError as exc:
            self._log.warning("malformed frame from peer", peer=name, error=str(exc))
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
            EOFError,
            HandshakeFailed,
        ):
            pass  # the peer went away (it redials), or its handshake failed (logged)
        except Exception:
            # A bug triggered by one peer's input must cost that connection only.
            self._log.exception("peer connection failed", peer=name)
        finally:
            current = self._inbound.get(name or "")
            if name is not None and current is not None and current.stream is stream:
                del self._inbound[name]
            await trio.aclose_forcefully(stream)

    async def _accept_tls(self, tcp: trio.SocketStream) -> trio.abc.Stream:
        """The TLS handshake of an inbound link; a failure is counted, logged once per
        1,000 (a flood of them must not flood the log) and raised."""
        assert self.tls is not None
        try:
            with trio.fail_after(_CONNECT_TIMEOUT_S):
                return await accept_stream(tcp, self.tls[0])
        except (HandshakeFailed, trio.TooSlowError) as exc:
            self.tls_refused += 1
            if self.tls_refused % 1000 == 1:
                try:
                    remote = "{}:{}".format(*tcp.socket.getpeername()[:2])
                except OSError:
                    remote = "?"
                self._log.warning(
                    "refused peer: TLS handshake failed",
                    remote=remote,
                    reason=str(exc) or type(exc).__name__,
                    refused_total=self.tls_refused,
                )
            raise

    async def _admit(self, stream: trio.abc.Stream, hello: Any) -> str | None:
        reason = self._refusal(hello, certificate_name(stream))
        if reason is not None:
            self._log.error("refused peer", reason=reason, hello=str(hello)[:200])
            await stream.send_all(encode_frame({"t": "refused", "reason": reason}))
            return None
        name: str = hello["name"]
        old = self._inbound.get(name)
        if old is not None:
            await trio.aclose_forcefully(old.stream)  # silent long enough: replaced
        self._inbound[name] = _Inbound(stream, trio.current_time())
        await stream.send_all(encode_frame({"t": "welcome"}))
        return name

    def _refusal(self, hello: Any, certified: str | None) -> str | None:
        """Why ``hello`` is refused (None: admitted); ``certified``: the name in the
        dialer's TLS certificate."""
        if not isinstance(hello, dict) or hello.get("t") != "hello":
            return "expected a hello"
        if hello.get("cluster") != self.cluster_id:
            return f"cluster id {hello.get('cluster')!r} is not ours ({self.cluster_id!r})"
        name = hello.get("name")
        if hello.get("to") != self.name:
            return f"this is {self.name!r}, not {hello.get('to')!r}"
        if not isinstance(name, str) or name == self.name:
            return f"peer claims our own name {name!r}"
        if self.tls is not None and certified != name:
            return f"the TLS certificate is for {certified!r}, not {name!r}"
        if self.auth is not None:
            now_ms = time.time_ns() // 1_000_000
            refusal = self.auth.check(PEER, (self.cluster_id, name, self.name), hello, now_ms)
            if refusal is not None:
                return refusal
        if name not in self._wanted:
            return f"{name!r} is not a member of this group"
        old = self._inbound.get(name)
        if old is not None and trio.current_time() - old.last_seen < _DEAD_AFTER_S:
            return f"{name!r} is already connected from another process"
        return None

    async def _dial_loop(self, peer: _Peer) -> None:
        backoff = _BACKOFF_MIN_S
        with peer.scope:
            while True:
                try:
                    await self._dial_once(peer)
                    backoff = _BACKOFF_MIN_S
                except HandshakeRefused as exc:
                    if peer.last_error != str(exc):
                        self._log.error("peer refused us", peer=peer.name, reason=str(exc))
                    peer.last_error = str(exc)
                    backoff = _REFUSED_BACKOFF_S
                except HandshakeFailed as exc:  # its certificate (ours: refused after it)
                    if peer.last_error != str(exc):
                        self._log.error(
                            "TLS handshake with peer failed", peer=peer.name, reason=str(exc)
                        )
                    peer.last_error = str(exc)
                except (
                    OSError,
                    EOFError,
                    trio.BrokenResourceError,
                    trio.TooSlowError,
                    FrameError,
                ) as exc:
                    # an ssl error (say, our certificate refused) as a bare BrokenResourceError
                    why = str(exc) or str(exc.__cause__ or exc.__context__ or "")
                    peer.last_error = f"{type(exc).__name__}: {why}"
                finally:
                    peer.connected = False
                await trio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _dial_once(self, peer: _Peer) -> None:
        host, port = parse_address(peer.address)
        stream: trio.abc.Stream
        with trio.fail_after(_CONNECT_TIMEOUT_S):
            stream = await trio.open_tcp_stream(host, port)
            if self.tls is not None:
                stream = await open_client_stream(stream, self.tls[1], host)
        async with stream:
            hello: dict[str, Any] = {
                "t": "hello",
                "cluster": self.cluster_id,
                "name": self.name,
                "to": peer.name,
            }
            if self.auth is not None:
                fields = (self.cluster_id, self.name, peer.name)
                now_ms = time.time_ns() // 1_000_000
                hello.update(self.auth.proof(PEER, fields, now_ms, os.urandom(NONCE_BYTES)))
            decoder = FrameDecoder()
            with trio.fail_after(_CONNECT_TIMEOUT_S):
                await stream.send_all(encode_frame(hello))
                answer = await _read_one(stream, decoder)
            if not isinstance(answer, dict) or answer.get("t") != "welcome":
                reason = answer.get("reason") if isinstance(answer, dict) else answer
                raise HandshakeRefused(str(reason))
            peer.connected = True
            peer.last_error = None
            self._log.info("peer link up", peer=peer.name)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_close, stream, nursery.cancel_scope)
                    nursery.start_soon(_keepalive, peer)
                    await self._pump(peer, stream, nursery.cancel_scope)
            finally:
                _drain(peer.receive)  # stale while down; Raft resends what still matters
            self._log.info("peer link down", peer=peer.name, error=peer.last_error)

    async def _pump(self, peer: _Peer, stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
        """Write queued payloads, coalescing everything queued into one write."""
        try:
            await self._pump_forever(peer, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            peer.last_error = f"send failed: {exc}"
        scope.cancel()

    async def _pump_forever(self, peer: _Peer, stream: trio.abc.Stream) -> None:
        receive = peer.receive
        while True:
            chunks = [encode_frame(await receive.receive())]
            while len(chunks) < 4096:
                try:
                    chunks.append(encode_frame(receive.receive_nowait()))
                except trio.WouldBlock:
                    break
            await stream.send_all(b"".join(chunks))
            peer.sent += len(chunks)


async def _keepalive(peer: _Peer) -> None:
    """Queue a ping whenever the link was idle for a while, so the peer sees us alive."""
    last = -1
    while True:
        await trio.sleep(_KEEPALIVE_S)
        if peer.sent == last:
            with contextlib.suppress(trio.WouldBlock):
                peer.send.send_nowait(_PING)
        last = peer.sent


async def _watch_close(stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
    """The dialed side never receives after the handshake; EOF means the peer is gone."""
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


def _drain(receive: trio.MemoryReceiveChannel[Any]) -> None:
    while True:
        try:
            receive.receive_nowait()
        except trio.WouldBlock:
            return


async def _read_one(stream: trio.abc.Stream, decoder: FrameDecoder) -> Any:
    while True:
        for message in decoder.messages():
            return message
        data = await stream.receive_some(_READ_SIZE)
        if not data:
            raise EOFError("connection closed during handshake")
        decoder.feed(data)

"""A fault-injecting TCP proxy for one directed replica link, and the mesh of them.

The chaos topology gives every replica its own configuration file in which
each peer's Raft address is a proxy dedicated to the link ``src -> dst``
(:class:`ProxyMesh`). A proxy forwards bytes both ways; each direction has
its own :class:`DirectionPolicy`: pass, delay (every chunk is held for a
fixed time, order preserved) or drop (a blackhole: bytes are read and
discarded, the connection stays open, as when packets are lost).

Dropping part of a byte stream would cut a frame in half, which no real
network does to TCP. So whenever a direction starts or stops dropping, the
proxy closes the link's live connections: a new connection starts dropping
from its first byte, and after healing the peers reconnect and start with
whole frames again.
"""

from __future__ import annotations

import math
import socket
import struct
from collections.abc import Iterable, Mapping

import attrs
import trio

from shard.observability import get_logger

log = get_logger("chaos.proxy")

_CHUNK = 65536
_DELAY_QUEUE = 4096  # chunks held per delayed direction before the reader waits


@attrs.frozen
class DirectionPolicy:
    """What happens to the bytes of one direction: dropped, or delivered after ``delay`` s."""

    drop: bool = False
    delay: float = 0.0


PASS = DirectionPolicy()
DROP = DirectionPolicy(drop=True)


@attrs.frozen
class ProxyStatistics:
    connections: int
    live_connections: int
    bytes_forwarded: int
    bytes_dropped: int


class LinkProxy:
    """Listens on 127.0.0.1 and relays each accepted connection to ``upstream``.

    ``forward`` is the accepting side to upstream (the dialling replica's
    messages), ``backward`` the replies. Run it with
    ``port = await nursery.start(proxy.serve)``; cancelling ``serve``
    closes the listener and every relayed connection.
    """

    def __init__(self, name: str, upstream: tuple[str, int]) -> None:
        self.name = name
        self.upstream = upstream
        self.forward = PASS
        self.backward = PASS
        self.port = 0
        self._live: set[trio.CancelScope] = set()
        self._connections = 0
        self._forwarded = 0
        self._dropped = 0

    def statistics(self) -> ProxyStatistics:
        return ProxyStatistics(
            connections=self._connections,
            live_connections=len(self._live),
            bytes_forwarded=self._forwarded,
            bytes_dropped=self._dropped,
        )

    def set_policy(
        self, forward: DirectionPolicy | None = None, backward: DirectionPolicy | None = None
    ) -> None:
        """Change either direction; resets live connections when dropping starts or stops."""
        new_forward = self.forward if forward is None else forward
        new_backward = self.backward if backward is None else backward
        reset = new_forward.drop != self.forward.drop or new_backward.drop != self.backward.drop
        self.forward, self.backward = new_forward, new_backward
        if reset:
            self.reset_connections()

    def reset_connections(self) -> None:
        """Close every relayed connection (both ends see the connection end)."""
        for scope in list(self._live):
            scope.cancel()

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and relay until cancelled; reports the bound port through ``task_status``."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery, listeners[0]:
            task_status.started(self.port)
            while True:
                stream = await listeners[0].accept()
                nursery.start_soon(self._relay, stream)

    async def _relay(self, downstream: trio.SocketStream) -> None:
        self._connections += 1
        with trio.CancelScope() as scope:
            self._live.add(scope)
            try:
                async with downstream:
                    try:
                        upstream = await trio.open_tcp_stream(*self.upstream)
                    except OSError as exc:
                        # the replica is down: the dialler sees a reset, as for a refused connect
                        log.debug("upstream refused", link=self.name, error=repr(exc))
                        _abort_on_close(downstream)
                        return
                    async with upstream, trio.open_nursery() as nursery:
                        cancel = nursery.cancel_scope
                        nursery.start_soon(self._pump, downstream, upstream, True, cancel)
                        nursery.start_soon(self._pump, upstream, downstream, False, cancel)
            finally:
                self._live.discard(scope)
                if scope.cancel_called:
                    # cut by a policy change: both ends see a reset, as when a link breaks
                    _abort_on_close(downstream)

    def _policy(self, forward: bool) -> DirectionPolicy:
        return self.forward if forward else self.backward

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        forward: bool,
        connection: trio.CancelScope,
    ) -> None:
        """Copy one direction; when either end closes or fails, the whole connection ends."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](_DELAY_QUEUE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._deliver, receive, sink, connection)
            async with send:
                try:
                    while True:
                        data = await source.receive_some(_CHUNK)
                        if not data:
                            break
                        policy = self._policy(forward)
                        if policy.drop:
                            self._dropped += len(data)
                            continue
                        await send.send((trio.current_time() + policy.delay, data))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    log.debug("link read ended", link=self.name, error=repr(exc))
                    connection.cancel()
        connection.cancel()

    async def _deliver(
        self,
        receive: trio.MemoryReceiveChannel[tuple[float, bytes]],
        sink: trio.SocketStream,
        connection: trio.CancelScope,
    ) -> None:
        async with receive:
            try:
                async for due, data in receive:
                    await trio.sleep_until(due)
                    await sink.send_all(data)
                    self._forwarded += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                log.debug("link write ended", link=self.name, error=repr(exc))
                connection.cancel()


def _abort_on_close(stream: trio.SocketStream) -> None:
    """Make closing ``stream`` send a TCP reset instead of an orderly end of stream."""
    try:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, trio.ClosedResourceError) as exc:
        log.debug("cannot set SO_LINGER", error=repr(exc))


@attrs.frozen
class Link:
    src: str
    dst: str


class ProxyMesh:
    """One :class:`LinkProxy` per ordered pair of replicas of a group.

    ``proxies[Link(a, b)]`` is where replica ``a`` dials replica ``b``. To
    block what ``a`` sends to ``b`` we drop the forward direction of
    ``a -> b`` and the backward direction of ``b -> a``, so it holds however
    the node runtime uses its connections (one per direction or shared).
    """

    def __init__(self, raft_addresses: dict[str, tuple[str, int]]) -> None:
        self.nodes = tuple(raft_addresses)
        self.proxies: dict[Link, LinkProxy] = {
            Link(a, b): LinkProxy(f"{a}->{b}", raft_addresses[b])
            for a in self.nodes
            for b in self.nodes
            if a != b
        }
        self._blocked: set[Link] = set()
        self._delays: dict[Link, float] = {}

    async def serve(
        self,
        ports: Mapping[Link, int] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run every proxy until cancelled; started once all of them listen.

        ``ports`` fixes the port of some links (the others get any free one): a port the
        kernel hands out now may be one a replica or gateway is configured to listen on
        later, so the chaos topology picks them apart from its own."""
        async with trio.open_nursery() as nursery:
            for link, proxy in self.proxies.items():
                await nursery.start(proxy.serve, "127.0.0.1", (ports or {}).get(link, 0))
            task_status.started()
            await trio.sleep(math.inf)

    def address(self, src: str, dst: str) -> str:
        """The address ``src`` must use to reach ``dst``."""
        return f"127.0.0.1:{self.proxies[Link(src, dst)].port}"

    def blocked(self) -> frozenset[Link]:
        return frozenset(self._blocked)

    def _apply(self) -> None:
        for link, proxy in self.proxies.items():
            reverse = Link(link.dst, link.src)
            proxy.set_policy(
                forward=DirectionPolicy(
                    drop=link in self._blocked, delay=self._delays.get(link, 0.0)
                ),
                backward=DirectionPolicy(
                    drop=reverse in self._blocked, delay=self._delays.get(reverse, 0.0)
                ),
            )

    def block(self, src: str, dst: str) -> None:
        """Drop everything ``src`` sends to ``dst`` (one way: an asymmetric fault)."""
        self._blocked.add(Link(src, dst))
        self._apply()

    def delay(self, src: str, dst: str, seconds: float) -> None:
        """Deliver what ``src`` sends to ``dst`` ``seconds`` late."""
        self._delays[Link(src, dst)] = seconds
        self._apply()

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Cut every link between the two sides, both ways."""
        b_nodes = list(side_b)
        for a in side_a:
            for b in b_nodes:
                self._blocked.add(Link(a, b))
                self._blocked.add(Link(b, a))
        self._apply()

    def isolate(self, node: str) -> None:
        """Cut ``node`` from every other replica, both ways."""
        self.partition([node], [n for n in self.nodes if n != node])

    def heal(self) -> None:
        """Remove every drop and delay."""
        self._blocked.clear()
        self._delays.clear()
        self._apply()

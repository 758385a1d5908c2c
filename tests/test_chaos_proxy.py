"""The fault-injecting link proxy with real trio sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from chaos.proxy import DROP, PASS, DirectionPolicy, Link, LinkProxy, ProxyMesh


class EchoServer:
    """Upstream that records what it receives and echoes it back."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            async with stream:
                async for data in stream:
                    self.received += data
                    await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the proxy reset the connection: expected in these tests


@pytest.fixture
async def echo(nursery: trio.Nursery) -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await nursery.start(server.serve)
    yield server


async def _proxy(nursery: trio.Nursery, echo: EchoServer) -> LinkProxy:
    proxy = LinkProxy("a->b", ("127.0.0.1", echo.port))
    await nursery.start(proxy.serve)
    return proxy


async def _wait_received(echo: EchoServer, size: int) -> None:
    with trio.fail_after(5):
        while len(echo.received) < size:
            await trio.sleep(0.01)


async def test_pass_relays_both_ways(nursery: trio.Nursery, echo: EchoServer) -> None:
    proxy = await _proxy(nursery, echo)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(b"hello")
        with trio.fail_after(5):
            assert await stream.receive_some(100) == b"hello"
    assert bytes(echo.received) == b"hello"
    assert proxy.statistics().bytes_forwarded == 10


async def test_delay_holds_each_direction(nursery: trio.Nursery, echo: EchoServer) -> None:
    proxy = await _proxy(nursery, echo)
    proxy.set_policy(forward=DirectionPolicy(delay=0.15), backward=DirectionPolicy(delay=0.1))
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        start = trio.current_time()
        await stream.send_all(b"ping")
        await _wait_received(echo, 4)
        assert trio.current_time() - start >= 0.15
        with trio.fail_after(5):
            assert await stream.receive_some(100) == b"ping"
        assert trio.current_time() - start >= 0.25


async def test_dropped_direction_is_a_blackhole(nursery: trio.Nursery, echo: EchoServer) -> None:
    proxy = await _proxy(nursery, echo)
    proxy.set_policy(forward=DROP)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(b"lost")
        with trio.move_on_after(0.3) as waited:
            await stream.receive_some(100)
        assert waited.cancelled_caught, "nothing may come back through a blackhole"
    assert echo.received == b""
    assert proxy.statistics().bytes_dropped == 4


async def test_asymmetric_drop_delivers_one_way(nursery: trio.Nursery, echo: EchoServer) -> None:
    proxy = await _proxy(nursery, echo)
    proxy.set_policy(backward=DROP)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(b"one-way")
        await _wait_received(echo, 7)
        with trio.move_on_after(0.3) as waited:
            await stream.receive_some(100)
        assert waited.cancelled_caught
    assert bytes(echo.received) == b"one-way"


async def test_changing_drop_resets_connections_and_heals(
    nursery: trio.Nursery, echo: EchoServer
) -> None:
    proxy = await _proxy(nursery, echo)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await stream.send_all(b"a")
    with trio.fail_after(5):
        assert await stream.receive_some(10) == b"a"
    proxy.set_policy(forward=DROP)
    with trio.fail_after(5):
        # the live connection is closed so no frame is ever cut in half
        while True:
            try:
                if await stream.receive_some(10) == b"":
                    break
            except trio.BrokenResourceError:
                break
    await stream.aclose()
    proxy.set_policy(forward=PASS)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(b"b")
        with trio.fail_after(5):
            assert await stream.receive_some(10) == b"b"
    assert bytes(echo.received) == b"ab"


def test_mesh_policies_for_block_partition_isolate() -> None:
    mesh = ProxyMesh({n: ("127.0.0.1", 1) for n in ("a", "b", "c")})
    mesh.block("a", "b")
    ab, ba = mesh.proxies[Link("a", "b")], mesh.proxies[Link("b", "a")]
    assert ab.forward.drop and not ab.backward.drop
    assert ba.backward.drop and not ba.forward.drop
    assert mesh.blocked() == {Link("a", "b")}
    mesh.heal()
    assert all(not p.forward.drop and not p.backward.drop for p in mesh.proxies.values())
    mesh.isolate("c")
    assert mesh.blocked() == {Link("a", "c"), Link("c", "a"), Link("b", "c"), Link("c", "b")}
    assert not mesh.proxies[Link("a", "b")].forward.drop
    mesh.heal()
    mesh.partition(["a"], ["b", "c"])
    assert Link("b", "c") not in mesh.blocked() and Link("b", "a") in mesh.blocked()
    mesh.delay("a", "b", 0.5)
    assert mesh.proxies[Link("a", "b")].forward.delay == 0.5
    assert mesh.proxies[Link("b", "a")].backward.delay == 0.5


async def test_mesh_serves_and_blocks_real_traffic(nursery: trio.Nursery, echo: EchoServer) -> None:
    mesh = ProxyMesh({"a": ("127.0.0.1", echo.port), "b": ("127.0.0.1", echo.port)})
    await nursery.start(mesh.serve)
    host, port = mesh.address("a", "b").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"x")
        with trio.fail_after(5):
            assert await stream.receive_some(10) == b"x"
    mesh.block("a", "b")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"y")
        with trio.move_on_after(0.3) as waited:
            await stream.receive_some(10)
        assert waited.cancelled_caught
    assert bytes(echo.received) == b"x"

"""Peer links over real TCP on 127.0.0.1: delivery, handshake refusals, bad frames, reconnects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from config.ports import free_ports
from shard.node.framing import FrameDecoder, encode_frame
from shard.node.transport import PeerTransport


def free_port() -> int:
    return free_ports(1)[0]


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.005)


class Inbox(list[tuple[str, Any]]):
    """A transport's ``deliver`` callback that keeps every ``(src, payload)`` it gets."""

    def __call__(self, src: str, payload: Any) -> None:
        self.append((src, payload))


def pair(cluster_b: str = "c1") -> tuple[PeerTransport, PeerTransport, Inbox, Inbox]:
    """Transports "a" and "b" of each other's peer set, and what each receives."""
    addr_a, addr_b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    peers = {"a": addr_a, "b": addr_b}
    got_a, got_b = Inbox(), Inbox()
    a = PeerTransport("c1", "a", addr_a, peers, deliver=got_a)
    return a, PeerTransport(cluster_b, "b", addr_b, peers, deliver=got_b), got_a, got_b


async def test_messages_flow_both_ways_in_order() -> None:
    a, b, got_a, got_b = pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: a.connected("b") and b.connected("a"))
        for i in range(1000):
            assert a.send("b", {"n": i, "blob": b"x" * 10})
        assert b.send("a", [1, 2, 3])
        await wait_for(lambda: len(got_b) == 1000 and len(got_a) == 1)
        assert [p["n"] for _, p in got_b] == list(range(1000))
        assert {src for src, _ in got_b} == {"a"}
        assert got_a == [("b", [1, 2, 3])]
        assert a.statistics()["b"].sent == 1000
        nursery.cancel_scope.cancel()


async def test_other_cluster_is_refused() -> None:
    a, b, got_a, _ = pair(cluster_b="c2")
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: "cluster id" in (b.statistics()["a"].last_error or ""))
        assert not b.connected("a")
        b.send("a", "hello?")
        assert got_a == []
        nursery.cancel_scope.cancel()


async def test_second_process_with_same_name_is_refused() -> None:
    a, b, got_a, _ = pair()
    impostor_at = f"127.0.0.1:{free_port()}"
    impostor = PeerTransport("c1", "b", impostor_at, {"a": a.listen}, deliver=Inbox())
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: b.connected("a"))
        await nursery.start(impostor.serve)
        await wait_for(lambda: "already connected" in (impostor.statistics()["a"].last_error or ""))
        assert not impostor.connected("a")
        assert b.send("a", "real")
        await wait_for(lambda: got_a == [("b", "real")])
        nursery.cancel_scope.cancel()


async def test_malformed_frame_closes_only_that_connection() -> None:
    a, b, got_a, _ = pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        rogue = await trio.open_tcp_stream("127.0.0.1", a.port)
        await rogue.send_all(b"\xff\xff\xff\xff")  # a 4 GiB frame header
        decoder = FrameDecoder()
        with trio.fail_after(5):
            while await rogue.receive_some(1024):  # closed by a: EOF ends the loop
                pass
        assert decoder.pending() == 0
        await rogue.aclose()
        await nursery.start(b.serve)
        assert await _round_trip(b, got_a)
        nursery.cancel_scope.cancel()


async def _round_trip(b: PeerTransport, got_a: list[tuple[str, Any]]) -> bool:
    await wait_for(lambda: b.connected("a"))
    b.send("a", "after")
    await wait_for(lambda: ("b", "after") in got_a)
    return True


async def test_garbage_after_handshake_closes_that_link_and_peer_redials() -> None:
    a, _, got_a, _ = pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        rogue = await trio.open_tcp_stream("127.0.0.1", a.port)
        await rogue.send_all(encode_frame({"t": "hello", "cluster": "c1", "name": "b", "to": "a"}))
        await rogue.send_all(encode_frame("ok") + b"\x00\x00\x00\x01\xc1")
        with trio.fail_after(5):
            while await rogue.receive_some(1024):
                pass
        await rogue.aclose()
        await wait_for(lambda: got_a == [("b", "ok")])
        nursery.cancel_scope.cancel()


async def test_queue_to_unreachable_peer_drops_when_full() -> None:
    addr_a = f"127.0.0.1:{free_port()}"
    a = PeerTransport(
        "c1", "a", addr_a, {"b": f"127.0.0.1:{free_port()}"}, deliver=Inbox(), queue_size=8
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        results = [a.send("b", i) for i in range(20)]
        assert results[:8] == [True] * 8
        assert results[8:] == [False] * 12
        assert a.statistics()["b"].dropped == 12
        assert not a.send("nobody", 1)
        nursery.cancel_scope.cancel()


async def test_link_comes_back_after_peer_restart() -> None:
    a, b, _, _ = pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        async with trio.open_nursery() as b_nursery:
            await b_nursery.start(b.serve)
            await wait_for(lambda: a.connected("b"))
            b_nursery.cancel_scope.cancel()
        await wait_for(lambda: not a.connected("b"))
        got_b2 = Inbox()
        b2 = PeerTransport("c1", "b", b.listen, {"a": a.listen, "b": b.listen}, deliver=got_b2)
        await nursery.start(b2.serve)
        await wait_for(lambda: a.connected("b"))
        a.send("b", "again")
        await wait_for(lambda: got_b2 == [("a", "again")])
        nursery.cancel_scope.cancel()


async def test_set_peers_adds_and_removes_links() -> None:
    a, b, _, _ = pair()
    a.set_peers({})
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        assert not a.send("b", 1)
        a.set_peers({"b": b.listen})
        await wait_for(lambda: a.connected("b"))
        a.set_peers({})
        assert "b" not in a.statistics()
        nursery.cancel_scope.cancel()

"""Peer links deliver every message in order through the callback; keepalives never."""

from __future__ import annotations

from typing import Any

import trio

from shard.node.transport import PeerTransport
from tests.test_transport import free_port, wait_for


async def test_deliver_callback_gets_every_message_in_order() -> None:
    addr_a, addr_b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    peers = {"a": addr_a, "b": addr_b}
    got: list[tuple[str, Any]] = []
    a = PeerTransport("c1", "a", addr_a, peers, deliver=lambda src, p: None)
    b = PeerTransport("c1", "b", addr_b, peers, deliver=lambda src, p: got.append((src, p)))
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: a.connected("b"))
        for i in range(500):
            assert a.send("b", [i, b"x" * 10])
        await wait_for(lambda: len(got) == 500)
        assert [p[0] for _, p in got] == list(range(500))
        assert {src for src, _ in got} == {"a"}
        await trio.sleep(1.2)  # two keepalive intervals: pings are not delivered
        assert len(got) == 500
        nursery.cancel_scope.cancel()

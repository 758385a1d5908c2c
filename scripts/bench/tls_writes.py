"""CPU per write over loopback, plain TCP against mutual TLS, and per TLS handshake.

    .venv/bin/python scripts/bench/tls_writes.py [--writes 20000] [--handshakes 200]

One trio process writes to itself over 127.0.0.1 (a reader task drains the
other end), so the CPU counted is both ends' (``time.process_time``). The
certificates and contexts are the ones a replica uses (``chaos.topology``
with ``tls=True``, ``shard.node.tls``). It says what a replica link pays per
write when ``[tls]`` is on (docs/operations.md, "TLS"); ``clob bench shard
--tls`` measures the whole effect.
"""

from __future__ import annotations

import argparse
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from chaos.topology import build_cluster
from shard.node.tls import accept_stream, client_context, open_client_stream, replica_contexts

Opener = Callable[[trio.SocketStream], Awaitable[trio.abc.Stream]]


async def _pair(
    server_side: Opener, client_side: Opener
) -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """Both ends of one loopback connection, each wrapped as asked (handshakes done)."""
    accepted: list[trio.abc.Stream] = []
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def accept() -> None:
            tcp = await listeners[0].accept()
            accepted.append(await server_side(tcp))

        nursery.start_soon(accept)
        client = await client_side(await trio.open_tcp_stream("127.0.0.1", port))
    await listeners[0].aclose()
    return accepted[0], client


async def _cpu_per_write(
    server: trio.abc.Stream, client: trio.abc.Stream, size: int, n: int
) -> float:
    payload = b"x" * size
    total = size * n

    async def drain() -> None:
        got = 0
        while got < total:
            got += len(await server.receive_some(1 << 18))

    began = time.process_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        for _ in range(n):
            await client.send_all(payload)
    return (time.process_time() - began) / n * 1e6


async def main(writes: int, handshakes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = build_cluster(
            Path(tmp), markets=[("BTC-USD", "0.01", "0.001")], gateways=0, tls=True
        )
        name = cluster.markets[0].replicas[0].name
        contexts = replica_contexts(cluster, name)
        dialer = client_context(cluster)
        assert contexts is not None and dialer is not None
        listener: ssl.SSLContext = contexts[0]

        async def plain(tcp: trio.SocketStream) -> trio.abc.Stream:
            return tcp

        async def tls_server(tcp: trio.SocketStream) -> trio.abc.Stream:
            return await accept_stream(tcp, listener)

        async def tls_client(tcp: trio.SocketStream) -> trio.abc.Stream:
            return await open_client_stream(tcp, dialer, "127.0.0.1")

        print(f"nproc {os.cpu_count()}, {writes:,} writes per size, CPU of both ends per write")
        for size in (300, 16_384):
            row = []
            for label, server_side, client_side in (
                ("plain", plain, plain),
                ("tls", tls_server, tls_client),
            ):
                server, client = await _pair(server_side, client_side)
                row.append(f"{label} {await _cpu_per_write(server, client, size, writes):.1f} us")
                await trio.aclose_forcefully(client)
                await trio.aclose_forcefully(server)
            print(f"{size:>6}-byte writes: " + ", ".join(row))
        began = time.process_time()
        for _ in range(handshakes):
            server, client = await _pair(tls_server, tls_client)
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(server)
        per = (time.process_time() - began) / handshakes * 1e3
        print(f"mutual TLS handshake (connect, both ends, close): {per:.2f} ms of CPU")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--handshakes", type=int, default=200)
    args = parser.parse_args()
    trio.run(main, args.writes, args.handshakes)

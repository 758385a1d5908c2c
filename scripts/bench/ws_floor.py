"""The floor under the gateway: what trio and WebSocket framing alone cost per message here.

    scripts/bench/ws_floor.py [--connections 32] [--seconds 5]

The gateway's throughput target is judged against what its building blocks
cost on this machine, with none of our code involved:

* ``trio``: one checkpoint, and one message handed to another task and back
  through memory channels (the scheduler work every hop between tasks costs);
* ``trio-websocket``: an echo server (one ``get_message`` / ``send_message``
  per message, as any handler must do) in its own process, driven by
  ``--connections`` trio-websocket clients in this process, each with one
  message in flight; the server's CPU per echoed message comes from
  ``/proc`` (user + system);
* ``wsproto``: the same echo written straight on a trio socket stream and
  wsproto, one task per connection, no reader task or channel: roughly the
  least any trio server speaking WebSocket in Python can spend.

The server's CPU per message bounds the messages one gateway process (one
core, under the GIL) can answer per second, whatever the gateway itself does.
docs/benchmarks.md, section 5, quotes it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url, serve_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)

# an order as a client sends it: the size matters for framing and masking
_MESSAGE = (
    '{"op":"new_order","id":17,"market":"BTC-USD","side":"buy","order_type":"limit",'
    '"price":"100.25","qty":"0.5","client_order_id":"c-17"}'
)
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


# -- servers (run in a child process) ---------------------------------------------------------


async def _serve_trio_websocket(port: int) -> None:
    async def handler(request: object) -> None:
        ws = await request.accept()  # type: ignore[attr-defined]
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except Exception:  # the client went away: this echo has nothing more to do
            return

    await serve_websocket(handler, "127.0.0.1", port, None)


async def _serve_wsproto(port: int) -> None:
    async def connection(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            ws.receive_data(data)
            out: list[bytes] = []
            closing = False
            for event in ws.events():
                reply: Event | None = None
                if isinstance(event, Request):
                    reply = AcceptConnection()
                elif isinstance(event, TextMessage):
                    reply = TextMessage(data=event.data)
                elif isinstance(event, Ping):
                    reply = event.response()
                elif isinstance(event, CloseConnection):
                    reply, closing = event.response(), True
                if reply is not None:
                    out.append(ws.send(reply))
            if out:
                await stream.send_all(b"".join(out))
            if closing:
                return

    await trio.serve_tcp(connection, port, host="127.0.0.1")


# -- measurements -----------------------------------------------------------------------------


async def _trio_costs(rounds: int) -> tuple[float, float]:
    """Microseconds of CPU per checkpoint and per round trip to another task."""
    began = time.process_time()
    for _ in range(rounds):
        await trio.lowlevel.checkpoint()
    checkpoint = (time.process_time() - began) / rounds * 1e6
    to_echo, echo_in = trio.open_memory_channel[int](0)
    echo_out, back = trio.open_memory_channel[int](0)

    async def echo() -> None:
        async for value in echo_in:
            await echo_out.send(value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        began = time.process_time()
        for i in range(rounds):
            await to_echo.send(i)
            await back.receive()
        round_trip = (time.process_time() - began) / rounds * 1e6
        nursery.cancel_scope.cancel()
    return checkpoint, round_trip


async def _drive(port: int, connections: int, seconds: float, server_pid: int) -> dict[str, float]:
    """Echo through ``connections`` clients for ``seconds`` after a one-second warm-up."""
    count = 0

    async def client() -> None:
        nonlocal count
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            while True:
                await ws.send_message(_MESSAGE)
                await ws.get_message()
                count += 1

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(client)
        await trio.sleep(1.0)
        start_count, start_server = count, _cpu_seconds(server_pid)
        start_client = time.process_time()
        await trio.sleep(seconds)
        messages = max(1, count - start_count)
        server_cpu = _cpu_seconds(server_pid) - start_server
        client_cpu = time.process_time() - start_client
        nursery.cancel_scope.cancel()
    return {
        "messages/s": messages / seconds,
        "server CPU us/message": server_cpu / messages * 1e6,
        "client CPU us/message": client_cpu / messages * 1e6,
        "server messages/s per CPU second": messages / max(server_cpu, 1e-9),
    }


async def _wait_listening(port: int) -> None:
    with trio.fail_after(10):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


def _echo(kind: str, port: int, connections: int, seconds: float) -> dict[str, float]:
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)])
    try:
        trio.run(_wait_listening, port)
        return trio.run(_drive, port, connections, seconds, server.pid)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--serve", choices=("trio-websocket", "wsproto"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "trio-websocket":
        trio.run(_serve_trio_websocket, args.port)
        return
    if args.serve == "wsproto":
        trio.run(_serve_wsproto, args.port)
        return
    load = os.getloadavg()[0]
    print(f"nproc {os.cpu_count()}, load average {load:.2f}, Python {sys.version.split()[0]}")
    checkpoint, round_trip = trio.run(_trio_costs, 50_000)
    print(f"trio: checkpoint {checkpoint:.1f} us CPU, round trip to another task {round_trip:.1f}")
    for kind in ("trio-websocket", "wsproto"):
        print(f"echo server on {kind}, {args.connections} connections x 1 in flight ...",
              file=sys.stderr, flush=True)  # fmt: skip
        result = _echo(kind, args.port, args.connections, args.seconds)
        print(f"{kind} echo: " + ", ".join(f"{k} {v:,.0f}" for k, v in result.items()))


if __name__ == "__main__":
    main()

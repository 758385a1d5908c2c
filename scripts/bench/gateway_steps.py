"""Trio task steps and CPU per order inside one gateway process, by task.

    scripts/bench/gateway_steps.py [--connections 32] [--seconds 5] [--op new_order|ping]

Runs ``clob gateway --local-engine`` (one market, an in-process engine, no
replicas) in a child process with a ``trio.abc.Instrument`` that counts each
task's steps (every time the scheduler runs a task until its next
checkpoint), drives it with ``--connections`` clients in closed loop (one
request in flight each) and prints, for the measured window only, the
gateway's steps and CPU per request, split by task. Each step costs the
scheduler several microseconds here (``scripts/bench/ws_floor.py``), so the
step count is the part of the gateway's cost that trio scheduling explains.
docs/benchmarks.md, section 5, quotes it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _serve(out: Path, argv: list[str]) -> None:
    """The child: the gateway with a step-counting instrument; SIGUSR1 marks the window."""
    from trio.abc import Instrument

    class Steps(Instrument):
        def __init__(self) -> None:
            self.by_task: collections.Counter[str] = collections.Counter()

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.by_task[task.name] += 1

    steps = Steps()
    marks: list[dict[str, int]] = []

    def mark(signum: int, frame: object) -> None:
        marks.append(dict(steps.by_task))
        if len(marks) == 2:
            out.write_text(json.dumps(marks))

    signal.signal(signal.SIGUSR1, mark)
    run = trio.run

    def instrumented(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("instruments", []).append(steps)
        return run(*args, **kwargs)

    trio.run = instrumented  # type: ignore[assignment]
    from cli.main import main

    sys.argv = ["clob", "gateway", *argv]
    main()


async def _drive(
    url: str, keys: list[str], op: str, market: str, seconds: float, pid: int
) -> tuple[int, float]:
    """Requests answered and the gateway's CPU seconds, both within the measured window."""
    from cli.bench_gateway import _connect, _order
    from gateway.client import GatewayClient

    done = 0

    async def loop(client: GatewayClient, seed: int, deadline: float) -> None:
        nonlocal done
        rng = random.Random(seed)
        while trio.current_time() < deadline:
            if op == "ping":
                await client.request("ping")
            else:
                await client.request("new_order", **_order(market, rng))
            done += 1

    async with trio.open_nursery() as nursery:
        clients = [await nursery.start(_connect, url, key) for key in keys]
        async with trio.open_nursery() as warmup:  # one second unmeasured
            for i, client in enumerate(clients):
                warmup.start_soon(loop, client, i, trio.current_time() + 1.0)
        before, cpu = done, _cpu_seconds(pid)
        os.kill(pid, signal.SIGUSR1)
        async with trio.open_nursery() as workers:
            for i, client in enumerate(clients):
                workers.start_soon(loop, client, 1000 + i, trio.current_time() + seconds)
        os.kill(pid, signal.SIGUSR1)
        cpu = _cpu_seconds(pid) - cpu
        nursery.cancel_scope.cancel()
    return done - before, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--op", choices=("new_order", "ping"), default="new_order")
    parser.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        _serve(Path(args.serve[0]), args.serve[1:])
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from chaos.topology import DEFAULT_MARKETS, build_cluster
    from cli.processes import wait_listening
    from config.render import write_config
    from gateway.auth import KeyStore

    with tempfile.TemporaryDirectory(prefix="clob-gw-steps-") as tmp:
        root = Path(tmp)
        cluster = build_cluster(root, markets=DEFAULT_MARKETS[:1], gateways=1, durability="none")
        config = write_config(cluster, root / "cluster.toml")
        store = KeyStore(cluster.keys_file)
        keys = [store.create(f"steps{i}").api_key for i in range(args.connections)]
        gateway = cluster.gateways[0]
        counts = root / "steps.json"
        argv = ["--config", str(config), "--name", gateway.name, "--local-engine"]
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(counts), *argv, "--log-level", "WARNING"]
        )
        try:
            if not trio.run(wait_listening, gateway.listen, 60.0):
                sys.exit("the gateway did not start listening")
            print(f"{args.connections} connections, {args.op}, 1 s warm-up ...", file=sys.stderr)
            requests, cpu = trio.run(
                _drive,
                f"ws://{gateway.listen}/",
                keys,
                args.op,
                cluster.markets[0].name,
                args.seconds,
                child.pid,
            )
            for _ in range(100):
                if counts.exists():
                    break
                time.sleep(0.05)
        finally:
            child.terminate()
            child.wait()
        first, last = json.loads(counts.read_text())
        delta = {task: n - first.get(task, 0) for task, n in last.items()}
        requests = max(1, requests)
        total = sum(delta.values())
        print(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
        print(
            f"{requests / args.seconds:,.0f} {args.op}/s; gateway: {total / requests:.1f} task "
            f"steps and {cpu / requests * 1e6:.0f} us of CPU per request"
        )
        for task, n in sorted(delta.items(), key=lambda item: -item[1]):
            if n / requests >= 0.05:
                print(f"  {n / requests:5.2f} steps per request  {task}")


if __name__ == "__main__":
    main()

"""``clob bench shard``: one market's replica group as 3 real processes on this machine.

Phases, each reported separately:

1. throughput: ``--inflight`` submits kept in flight for ``--duration`` seconds
   (closed loop); orders/s committed *and* applied (acknowledged);
2. latency: an open loop at ``--rate`` orders/s for ``--duration`` seconds;
   submit-to-acknowledgement latency p50/p99/p99.9/max (hdrh, microseconds),
   measured from the moment each order was due, so a stall is not hidden;
3. failover: ``--kills`` times, kill -9 the leader while a prober submits,
   and time from the kill to the next acknowledgement; the killed replica is
   restarted and caught up before the next kill.

Orders alternate buy and sell at one price so the book stays small. The load
client is this one Python process; ``nproc`` is reported with the results.
``--tls`` runs every link (peers and clients) over mutual TLS, with
certificates made for the run (shard/node/tls.py).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import typer
from hdrh.histogram import HdrHistogram

import clob
from chaos.topology import build_cluster
from cli.apps import bench_app
from cli.certs import create_certificates, with_certificates
from cli.processes import ProcessGroup, clob_command
from config.load import load_config
from config.render import write_config
from config.schema import ClusterConfig, Durability, MarketConfig
from shard.node.api import ShardError
from shard.node.client import ShardClient
from shard.node.gctuning import tune_for_throughput
from shard.node.tls import client_context

MARKET = "BTC-USD"
_MAX_OUTSTANDING = 5000  # open loop: orders due beyond this many unanswered are shed


def write_topology(
    directory: Path, durability: Durability, replicas: int = 3, tls: bool = False
) -> Path:
    """A one-market topology on free 127.0.0.1 ports with data under ``directory``
    (``tls``: mutual TLS on, certificates under ``directory/tls``)."""
    cluster = build_cluster(
        directory,
        markets=[(MARKET, "0.01", "0.001")],
        replicas=replicas,
        gateways=0,
        durability=durability,
    )
    if tls:
        create_certificates(cluster, directory / "tls")
        cluster = with_certificates(cluster, directory / "tls")
    return write_config(cluster, directory / "cluster.toml")


class OrderSource:
    """Alternating buys and sells at one price across 100 users."""

    def __init__(self) -> None:
        self._n = itertools.count()

    def next(self) -> bytes:
        n = next(self._n)
        side = "buy" if n % 2 else "sell"
        return (
            f'{{"type":"new_order","market":"BTC-USD","user":"u{n % 100}","side":"{side}",'
            '"order_type":"limit","price":"100.00","qty":"0.001"}'
        ).encode()


async def wait_healthy(
    market: MarketConfig, timeout: float = 60.0, tls: ssl.SSLContext | None = None
) -> str:
    """Wait until every replica is reachable, one leads, and all applied the same; the leader."""
    async with ShardClient(market, "bench-status", tls=tls) as client:
        with trio.fail_after(timeout):
            while True:
                statuses = await client.status()
                leader = next((s for s in statuses if s.role == "leader"), None)
                applied = {s.applied_index for s in statuses}
                healthy = all(s.reachable for s in statuses) and len(applied) == 1
                if leader is not None and healthy and leader.applied_seq >= 1:
                    return leader.name
                await trio.sleep(0.05)


async def closed_loop(
    market: MarketConfig,
    inflight: int,
    duration: float,
    batch: int = 1,
    tls: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """Keep ``inflight`` submits outstanding: ``inflight / batch`` tasks, each submitting
    ``batch`` orders at a time (``submit_many``) and the next batch once all are answered."""
    source = OrderSource()
    done = 0
    connections = max(1, min(8, inflight // 256))
    clients = [
        ShardClient(market, f"bench-t{i}", retry_for=10.0, tls=tls) for i in range(connections)
    ]
    deadline = trio.current_time() + duration
    batch = max(1, min(batch, inflight))

    failures = 0

    async def worker(client: ShardClient) -> None:
        nonlocal done, failures
        while trio.current_time() < deadline:
            try:
                if batch == 1:
                    await client.submit(source.next())
                else:
                    await client.submit_many([source.next() for _ in range(batch)])
            except ShardError:
                failures += batch
                continue
            done += batch

    started = time.perf_counter()
    try:
        async with trio.open_nursery() as nursery:
            for i in range(max(1, inflight // batch)):
                nursery.start_soon(worker, clients[i % connections])
    finally:
        for client in clients:
            await client.aclose()
    elapsed = time.perf_counter() - started
    return {
        "inflight": inflight,
        "batch": batch,
        "orders": done,
        "failures": failures,
        "seconds": elapsed,
        "orders_per_s": done / elapsed,
    }


def cpu_ceilings(
    replica_us_per_order: float, leader_us_per_order: float, cores: int
) -> dict[str, float]:
    """The orders/s the replicas' CPU allows at a measured cost per order.

    ``ceiling_shared_cores``: every replica on this machine's ``cores`` and a load
    client that costs nothing. ``ceiling_own_cores``: each replica on a core of its
    own, where the leader (which also serves clients) is the busiest. Both hold
    only at the operating point measured (batching changes the cost per order);
    they say how far a target is from what the CPU can give at all.
    """
    return {
        "ceiling_shared_cores": cores * 1e6 / max(replica_us_per_order, 1e-9),
        "ceiling_own_cores": 1e6 / max(leader_us_per_order, 1e-9),
    }


def orders_due(elapsed: float, rate: float) -> int:
    """How many orders of an open loop at ``rate`` are due ``elapsed`` seconds in.

    Order ``k`` (from 0) is due at ``k / rate``, so the first is due at once;
    each order's latency is measured from its due time.
    """
    return math.floor(elapsed * rate) + 1


async def open_loop(
    market: MarketConfig, rate: int, duration: float, tls: ssl.SSLContext | None = None
) -> dict[str, Any]:
    source = OrderSource()
    histogram = HdrHistogram(1, 60_000_000, 3)
    failures = shed = outstanding = 0
    # Several client ids: one id keeps at most 900 requests unanswered (ShardClient window).
    clients = [ShardClient(market, f"bench-latency-{i}", retry_for=10.0, tls=tls) for i in range(8)]
    turn = itertools.cycle(clients)

    async def one(due: float) -> None:
        nonlocal failures, outstanding
        outstanding += 1
        try:
            await next(turn).submit(source.next())
        except ShardError:
            failures += 1
            return
        finally:
            outstanding -= 1
        histogram.record_value(max(1, int((trio.current_time() - due) * 1e6)))

    started = trio.current_time()
    sent = 0
    try:
        async with trio.open_nursery() as nursery:
            now = started
            while now - started < duration:
                due_count = orders_due(now - started, rate) - sent
                for k in range(due_count):
                    if outstanding >= _MAX_OUTSTANDING:
                        shed += 1  # overloaded: count it, do not pile up more tasks
                    else:
                        nursery.start_soon(one, started + (sent + k) / rate)
                sent += due_count
                await trio.sleep(0.001)
                now = trio.current_time()
    finally:
        for client in clients:
            await client.aclose()
    elapsed = trio.current_time() - started

    def ms(percentile: float) -> float:
        return float(histogram.get_value_at_percentile(percentile)) / 1000

    return {
        "offered_rate": rate,
        "orders": sent,
        "achieved_rate": histogram.get_total_count() / elapsed,
        "failures": failures,
        "shed": shed,
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "p999_ms": ms(99.9),
        "max_ms": histogram.get_max_value() / 1000,
    }


async def failover(
    group: ProcessGroup, market: MarketConfig, kills: int, tls: ssl.SSLContext | None = None
) -> dict[str, Any]:
    times: list[float] = []
    for _ in range(kills):
        leader = await wait_healthy(market, tls=tls)
        name = f"bench-failover-{len(times)}"
        async with ShardClient(market, name, retry_for=30.0, tls=tls) as client:
            await client.submit(OrderSource().next())  # warm connection to the leader
            killed_at = trio.current_time()
            await group.kill(leader)
            await client.submit(OrderSource().next())
            times.append(trio.current_time() - killed_at)
        await group.start(leader)
    await wait_healthy(market, tls=tls)
    if not times:
        return {"kills": 0}
    ordered = sorted(times)
    return {
        "kills": len(times),
        "min_s": ordered[0],
        "p50_s": statistics.median(ordered),
        # nearest rank, so it never falls below the (interpolated) median
        "p90_s": ordered[math.ceil(0.9 * len(ordered)) - 1],
        "max_s": ordered[-1],
        "all_s": [round(t, 3) for t in times],
    }


async def run_bench(
    cluster: ClusterConfig, group: ProcessGroup, args: dict[str, Any]
) -> dict[str, Any]:
    market = cluster.markets[0]
    tls = client_context(cluster)
    await group.start_all()
    try:
        leader = await wait_healthy(market, tls=tls)
        report: dict[str, Any] = {
            "nproc": os.cpu_count(),
            "engine_build": clob.build_kind(),
            "durability": cluster.durability,
            "tls": tls is not None,
        }
        if args["idle"] > 0:
            # what a replica costs with nothing to do (ticks, heartbeats, timers)
            idle_before = group.cpu_seconds(list(group.children))
            await trio.sleep(args["idle"])
            idle = group.cpu_seconds(list(group.children)) - idle_before
            report["idle_cpu_percent_per_replica"] = idle / args["idle"] / len(group.children) * 100
        if args["duration"] > 0:
            names = list(group.children)
            before = {name: group.cpu_seconds([name]) for name in names}
            report["throughput"] = await closed_loop(
                market, args["inflight"], args["duration"], args["batch"], tls
            )
            used = {name: group.cpu_seconds([name]) - before[name] for name in names}
            cpu = sum(used.values())
            if cpu > 0:
                orders = max(1, report["throughput"]["orders"])
                report["throughput"]["replica_cpu_us_per_order"] = cpu / orders * 1e6
                # the leader does more per order (clients, replies) than each follower
                followers = [used[n] for n in names if n != leader]
                report["throughput"]["leader_cpu_us_per_order"] = used[leader] / orders * 1e6
                report["throughput"]["follower_cpu_us_per_order"] = (
                    sum(followers) / max(1, len(followers)) / orders * 1e6
                )
                report["throughput"].update(
                    cpu_ceilings(
                        report["throughput"]["replica_cpu_us_per_order"],
                        report["throughput"]["leader_cpu_us_per_order"],
                        os.cpu_count() or 1,
                    )
                )
            await wait_healthy(market, tls=tls)
            report["latency"] = await open_loop(market, args["rate"], args["duration"], tls)
        report["failover"] = await failover(group, market, args["kills"], tls)
        return report
    finally:
        await group.stop_all()


@bench_app.command("shard")
def bench_shard(
    rate: int = typer.Option(20_000, help="Offered orders/s for the latency phase."),
    duration: float = typer.Option(10.0, help="Seconds per load phase (0 skips them)."),
    inflight: int = typer.Option(2000, help="Submits in flight in the throughput phase."),
    batch: int = typer.Option(
        1,
        help="Throughput phase: orders per submit_many call (1 = one task per order in "
        "flight; larger batches cost the load client less CPU per order).",
    ),
    kills: int = typer.Option(20, help="Leader kill -9 failovers to time."),
    idle: float = typer.Option(
        0.0, help="First measure the replicas' CPU for this many seconds with no load."
    ),
    durability: str = typer.Option("fsync", help="Replica durability: fsync or none."),
    workdir: str | None = typer.Option(None, help="Data and logs here (default: a temp dir)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    node_log_level: str = typer.Option("WARNING", help="Log level of the replica processes."),
    tls: bool = typer.Option(False, "--tls", help="Mutual TLS on every link (certs made here)."),
) -> None:
    """Benchmark one market's 3-replica group of real processes (see module docstring)."""
    if durability not in ("fsync", "none"):
        raise typer.BadParameter("durability must be fsync or none", param_hint="--durability")
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="clob-bench-shard-"))
    base.mkdir(parents=True, exist_ok=True)
    config = write_topology(base, "fsync" if durability == "fsync" else "none", tls=tls)
    cluster = load_config(config)
    group = ProcessGroup()
    for replica in cluster.markets[0].replicas:
        argv = [*clob_command(), "node", "--config", str(config), "--node", replica.name]
        argv += ["--log-level", node_log_level]
        group.add(replica.name, argv, base / f"{replica.name}.log")
    args = {
        "duration": duration,
        "inflight": inflight,
        "batch": batch,
        "rate": rate,
        "kills": kills,
        "idle": idle,
    }
    tune_for_throughput()  # the load client shares the cores with the replicas
    report = trio.run(run_bench, cluster, group, args)
    if workdir is None:
        shutil.rmtree(base, ignore_errors=True)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"nproc {report['nproc']}, durability {report['durability']}, 3 replicas"
        + (", mutual TLS" if report["tls"] else "")
    )
    if "idle_cpu_percent_per_replica" in report:
        typer.echo(
            f"idle: {report['idle_cpu_percent_per_replica']:.1f}% of a core per replica "
            f"(no load for {idle:g} s)"
        )
    if "throughput" in report:
        t, lat = report["throughput"], report["latency"]
        typer.echo(
            f"throughput: {t['orders_per_s']:.0f} orders/s committed+applied "
            f"({t['orders']} in {t['seconds']:.1f}s, {t['inflight']} in flight, "
            f"batches of {t['batch']}, {t['failures']} failed)"
        )
        if "replica_cpu_us_per_order" in t:
            typer.echo(
                f"replica CPU during the throughput phase: "
                f"{t['replica_cpu_us_per_order']:.0f} us per order (3 replicas together; "
                f"leader {t['leader_cpu_us_per_order']:.0f}, "
                f"each follower {t['follower_cpu_us_per_order']:.0f})"
            )
            typer.echo(
                f"CPU ceilings at that cost: {t['ceiling_shared_cores']:,.0f} orders/s with the "
                f"3 replicas on this machine's {report['nproc']} cores and a free load client; "
                f"{t['ceiling_own_cores']:,.0f} orders/s with a core per replica (the leader's "
                f"is the limit)"
            )
        typer.echo(
            f"latency at {lat['offered_rate']}/s offered ({lat['achieved_rate']:.0f}/s done): "
            f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, "
            f"p99.9 {lat['p999_ms']:.2f} ms, max {lat['max_ms']:.2f} ms, "
            f"{lat['failures']} failed, {lat['shed']} shed (over {_MAX_OUTSTANDING} unanswered)"
        )
    f = report["failover"]
    if f.get("kills"):
        typer.echo(
            f"failover over {f['kills']} leader kills: min {f['min_s']:.3f}s, "
            f"p50 {f['p50_s']:.3f}s, p90 {f['p90_s']:.3f}s, max {f['max_s']:.3f}s"
        )

"""``clob bench gateway``: orders/s and latency end to end through real processes.

For each scenario (gateways x markets) it starts a fresh local cluster on
free ports (3 replicas per market via ``clob node``, gateways via ``clob
gateway``; ``--local-engine`` skips the replicas), then drives it from this
process over many WebSocket connections (one user each, spread over the
gateways and markets):

* throughput: every connection keeps ``--window`` (alias ``--pipeline``)
  orders in flight for ``--duration`` seconds; acknowledged orders per
  second;
* latency: open loop at a fixed total ``--rate``; each order's time from send
  to reply, p50 / p99 / p99.9.

Orders are limit orders of qty 1 around price 100 on both sides, so about
half trade. The load generator shares the machine with the cluster, so the
figures are for this machine (``nproc`` is printed) and this load generator.
"""

from __future__ import annotations

import itertools
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio
import typer
from hdrh.histogram import HdrHistogram

import clob
from chaos.topology import DEFAULT_MARKETS, build_cluster
from cli.apps import bench_app
from cli.processes import ProcessGroup, clob_command, wait_listening
from config.render import write_config
from config.schema import ClusterConfig
from gateway.auth import KeyStore
from gateway.client import ClientError, GatewayClient, open_client


@attrs.frozen
class Scenario:
    gateways: int
    markets: int

    @property
    def label(self) -> str:
        gateways = f"{self.gateways} gateway{'s' * (self.gateways > 1)}"
        return f"{gateways} x {self.markets} market{'s' * (self.markets > 1)}"


@attrs.frozen
class Result:
    scenario: str
    gateways: int
    markets: int
    connections: int
    orders_per_second: float
    rate: float
    latency_ms: dict[str, float]
    errors: int
    # CPU each role spent per acknowledged order in the throughput window
    cpu_us_per_order: dict[str, float]


def _parse_scenarios(text: str) -> list[Scenario]:
    scenarios = []
    for part in text.split(","):
        gateways, _, markets = part.strip().partition("x")
        scenarios.append(Scenario(int(gateways), int(markets)))
    return scenarios


@bench_app.command("gateway")
def bench_gateway(
    duration: float = typer.Option(5.0, help="Seconds of each measurement."),
    connections: int = typer.Option(32, help="Client connections (one user each)."),
    window: int = typer.Option(
        1,
        "--window",
        "--pipeline",
        help="Orders in flight per connection (throughput). A connection's orders to one "
        "market are applied in the order sent; the gateway sends those waiting as one batch.",
    ),
    rate: float = typer.Option(100.0, help="Total orders/s of the latency measurement."),
    scenarios: str = typer.Option("1x1,1x2,2x1,2x2", help="GATEWAYSxMARKETS, comma-separated."),
    durability: str = typer.Option("none", help="Replica durability: none or fsync."),
    local_engine: bool = typer.Option(False, help="Gateways on in-process engines, no replicas."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    keep: bool = typer.Option(False, help="Keep the run directories (logs)."),
) -> None:
    """Benchmark the gateway and replicas end to end (1 vs 2 gateways, 1 vs 2 markets)."""
    plan = _parse_scenarios(scenarios)
    results = []
    for scenario in plan:
        root = Path(tempfile.mkdtemp(prefix="clob-bench-gw-"))
        if not json_out:
            typer.echo(f"running {scenario.label} ...", err=True)
        results.append(
            trio.run(
                _scenario,
                scenario,
                root,
                connections,
                window,
                rate,
                duration,
                durability,
                local_engine,
            )
        )
        if not keep:
            _remove(root)
    doc = {
        "nproc": os.cpu_count(),
        "engine_build": clob.build_kind(),
        "durability": durability,
        "local_engine": local_engine,
        "duration_s": duration,
        "window": window,
        "results": [
            {**attrs.asdict(r), "gateway_ceiling": gateway_ceiling(r.cpu_us_per_order)}
            for r in results
        ],
    }
    if json_out:
        typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(
        f"nproc={doc['nproc']} durability={durability} local_engine={local_engine} "
        f"window={window} engine={doc['engine_build']}"
    )
    typer.echo(
        f"{'scenario':<24} {'conns':>5} {'orders/s':>9} {'rate':>6} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>6}  CPU us/order"
    )
    for r in results:
        lat = r.latency_ms
        cpu = ", ".join(f"{role} {us:.0f}" for role, us in r.cpu_us_per_order.items())
        typer.echo(
            f"{r.scenario:<24} {r.connections:>5} {r.orders_per_second:>9.0f} {r.rate:>6.0f} "
            f"{lat['p50']:>8.2f} {lat['p99']:>8.2f} {lat['p99.9']:>9.2f} {r.errors:>6}  {cpu}"
        )
    for r in results:
        ceiling = gateway_ceiling(r.cpu_us_per_order)
        if ceiling is not None:
            typer.echo(
                f"{r.scenario}: one gateway process (single-threaded) at this run's CPU per order "
                f"could acknowledge at most {ceiling:,.0f} orders/s on a core of its own"
            )


def gateway_ceiling(cpu_us_per_order: dict[str, float]) -> float | None:
    """Orders/s one gateway process could acknowledge on a core of its own.

    Each order passes through exactly one gateway, so the gateways' CPU per order
    is also one process's cost per order it serves; a process runs on one core
    (the GIL). None when the run measured no gateway CPU.
    """
    cost = cpu_us_per_order.get("gateways", 0.0)
    return 1e6 / cost if cost > 0 else None


def _remove(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    root.rmdir()


async def _scenario(
    scenario: Scenario,
    root: Path,
    connections: int,
    window: int,
    rate: float,
    duration: float,
    durability: str,
    local_engine: bool,
) -> Result:
    cluster = build_cluster(
        root,
        markets=DEFAULT_MARKETS[: scenario.markets],
        gateways=scenario.gateways,
        durability=durability,
    )
    config_path = write_config(cluster, root / "cluster.toml")
    store = KeyStore(cluster.keys_file)
    keys = [store.create(f"bench{i}").api_key for i in range(connections)]
    group = ProcessGroup()
    clob = clob_command()
    if not local_engine:
        for market in cluster.markets:
            for replica in market.replicas:
                argv = [*clob, "node", "--config", str(config_path), "--node", replica.name]
                group.add(replica.name, argv, root / "logs" / f"{replica.name}.log")
    for gateway in cluster.gateways:
        argv = [*clob, "gateway", "--config", str(config_path), "--name", gateway.name]
        argv += ["--log-level", "WARNING"] + (["--local-engine"] if local_engine else [])
        group.add(gateway.name, argv, root / "logs" / f"{gateway.name}.log")
    try:
        await group.start_all()
        urls = [f"ws://{g.listen}/" for g in cluster.gateways]
        for gateway in cluster.gateways:
            if not await wait_listening(gateway.listen, 60):
                raise RuntimeError(f"{gateway.name} is not listening; see {root / 'logs'}")
        await _wait_markets_open(urls, cluster)
        return await _measure(scenario, cluster, group, urls, keys, window, rate, duration)
    finally:
        await group.stop_all()


async def _wait_markets_open(urls: list[str], cluster: ClusterConfig) -> None:
    """Until every gateway follows every market (so each group has a leader)."""
    with trio.fail_after(60):
        for url in urls:
            async with open_client(url) as client:
                while True:
                    markets = await client.markets()
                    if all(m["status"] == "open" for m in markets):
                        break
                    await trio.sleep(0.2)


@attrs.define
class _Load:
    acked: int = 0
    errors: int = 0


def _order(market: str, rng: random.Random) -> dict[str, Any]:
    side = rng.choice(("buy", "sell"))
    offset = rng.randint(-5, 5)
    price = f"{100 + offset * (1 if side == 'buy' else -1) / 100:.2f}"
    return {"market": market, "side": side, "qty": "1", "price": price, "order_type": "limit"}


async def _measure(
    scenario: Scenario,
    cluster: ClusterConfig,
    group: ProcessGroup,
    urls: list[str],
    keys: list[str],
    window: int,
    rate: float,
    duration: float,
) -> Result:
    markets = [m.name for m in cluster.markets]
    load = _Load()
    histogram = HdrHistogram(1, 60_000_000, 3)  # microseconds
    async with trio.open_nursery() as nursery:
        clients: list[GatewayClient] = []
        for i, key in enumerate(keys):
            clients.append(await nursery.start(_connect, urls[i % len(urls)], key))
        # throughput: closed loop, ``window`` in flight per connection
        replicas = [r.name for m in cluster.markets for r in m.replicas]
        roles = {
            "gateways": [g.name for g in cluster.gateways],
            "replicas": [name for name in replicas if name in group.children],
        }
        cpu_before = {role: group.cpu_seconds(names) for role, names in roles.items()}
        client_before = time.process_time()
        deadline = trio.current_time() + duration
        async with trio.open_nursery() as workers:
            for i, client in enumerate(clients):
                for w in range(window):
                    market = markets[(i + w) % len(markets)]
                    workers.start_soon(_closed_loop, client, market, deadline, load, i * 100 + w)
        orders_per_second = load.acked / duration
        acked = max(1, load.acked)
        cpu_us = {
            role: round((group.cpu_seconds(names) - cpu_before[role]) / acked * 1e6, 1)
            for role, names in roles.items()
        }
        cpu_us["load client"] = round((time.process_time() - client_before) / acked * 1e6, 1)
        # latency: open loop at ``rate`` in total
        period = len(clients) / rate
        deadline = trio.current_time() + duration
        async with trio.open_nursery() as workers:
            for i, client in enumerate(clients):
                market = markets[i % len(markets)]
                workers.start_soon(_open_loop, client, market, period, deadline, histogram, load, i)
        nursery.cancel_scope.cancel()
    return Result(
        scenario=scenario.label,
        gateways=scenario.gateways,
        markets=scenario.markets,
        connections=len(keys),
        orders_per_second=orders_per_second,
        rate=rate,
        latency_ms={
            p: histogram.get_value_at_percentile(v) / 1000
            for p, v in (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))
        },
        errors=load.errors,
        cpu_us_per_order=cpu_us,
    )


async def _connect(
    url: str, key: str, *, task_status: trio.TaskStatus[GatewayClient] = trio.TASK_STATUS_IGNORED
) -> None:
    async with open_client(url, api_key=key) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def _closed_loop(
    client: GatewayClient, market: str, deadline: float, load: _Load, seed: int
) -> None:
    rng = random.Random(seed)
    while trio.current_time() < deadline:
        try:
            await client.request("new_order", **_order(market, rng))
            load.acked += 1
        except ClientError:
            load.errors += 1


async def _open_loop(
    client: GatewayClient,
    market: str,
    period: float,
    deadline: float,
    histogram: HdrHistogram,
    load: _Load,
    seed: int,
) -> None:
    rng = random.Random(seed)
    start = trio.current_time() + rng.random() * period  # spread the connections' phases
    async with trio.open_nursery() as nursery:
        for n in itertools.count():
            at = start + n * period
            if at >= deadline:
                break
            await trio.sleep_until(at)
            nursery.start_soon(_timed, client, _order(market, rng), histogram, load)


async def _timed(
    client: GatewayClient, order: dict[str, Any], histogram: HdrHistogram, load: _Load
) -> None:
    sent = trio.current_time()
    try:
        await client.request("new_order", **order)
    except ClientError:
        load.errors += 1
        return
    histogram.record_value(max(1, int((trio.current_time() - sent) * 1_000_000)))

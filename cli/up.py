"""``clob up``: run the whole local cluster in the foreground until Ctrl-C.

Starts every market's replica group (``clob node`` per replica) and a gateway
(``clob gateway``) as separate OS processes, each logging to
``<keys dir>/logs/NAME.log``; creates the demo users alice and bob on first
start and prints their API keys; prints a one-line status every few seconds
(from the replicas' status API); on Ctrl-C or SIGTERM it stops every child
(SIGTERM, a grace period, then SIGKILL). ``--local-engine`` runs only the
gateway, on in-process engines.
"""

from __future__ import annotations

import signal
from pathlib import Path

import trio
import typer

from cli.apps import app
from cli.gateway import DEFAULT_CONFIG, config_file, load_cluster
from cli.processes import ProcessGroup, clob_command, wait_listening
from config.schema import ClusterConfig
from config.secret import create_secret, read_secret
from gateway.auth import KeyStore
from shard.node.client import ShardClient

DEMO_USERS = ("alice", "bob")


@app.command()
def up(
    config: str = typer.Option(DEFAULT_CONFIG, help="Cluster configuration (TOML)."),
    gateway_name: str = typer.Option("gw-1", "--gateway", help="Which gateway to start."),
    local_engine: bool = typer.Option(
        False, help="No replica processes: the gateway runs in-process engines."
    ),
    status_every: float = typer.Option(5.0, help="Seconds between status lines."),
) -> None:
    """Start every replica group and a gateway (ws://127.0.0.1:8700/ by default)."""
    cluster = load_cluster(config)
    config_path = str(config_file(config))
    gateway = next((g for g in cluster.gateways if g.name == gateway_name), None)
    if gateway is None:
        raise typer.BadParameter(f"no gateway {gateway_name!r} in {config}", param_hint="--gateway")
    _demo_keys(cluster)
    if cluster.secret_file is not None and create_secret(Path(cluster.secret_file)):
        typer.echo(f"created the cluster secret {cluster.secret_file} (replicas require it)")
    logs = Path(cluster.keys_file).parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    clob = clob_command()
    group = ProcessGroup()
    if not local_engine:
        for market in cluster.markets:
            for replica in market.replicas:
                if not replica.join:
                    argv = [*clob, "node", "--config", config_path, "--node", replica.name]
                    group.add(replica.name, argv, logs / f"{replica.name}.log")
    argv = [*clob, "gateway", "--config", config_path, "--name", gateway_name]
    if local_engine:
        argv.append("--local-engine")
    group.add(gateway_name, argv, logs / f"{gateway_name}.log")
    trio.run(_run, cluster, group, gateway.listen, local_engine, status_every)


def _demo_keys(cluster: ClusterConfig) -> None:
    store = KeyStore(cluster.keys_file)
    existing = {r.user for r in store.records()}
    for user in DEMO_USERS:
        if user in existing:
            typer.echo(
                f"demo user {user} exists (keys are stored hashed; "
                f"`clob admin keys create {user}` makes a new one)"
            )
        else:
            key = store.create(user)
            typer.echo(f"demo user {user}: API key {key.api_key}")


async def _run(
    cluster: ClusterConfig,
    group: ProcessGroup,
    listen: str,
    local_engine: bool,
    status_every: float,
) -> None:
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await group.start_all()
                nursery.start_soon(_announce, listen)
                nursery.start_soon(_watch_children, group)
                if not local_engine:
                    nursery.start_soon(_status_loop, cluster, status_every)
                async for _ in signals:
                    typer.echo("stopping ...")
                    nursery.cancel_scope.cancel()
                    break
    finally:
        for name in await group.stop_all():
            typer.echo(f"{name} did not stop in time and was killed", err=True)
        typer.echo("stopped")


async def _announce(listen: str) -> None:
    if await wait_listening(listen, 60):
        typer.echo(f"gateway ready on ws://{listen}/  (Ctrl-C stops everything)")
        typer.echo("try: CLOB_API_KEY=<alice's key> clob order BTC-USD buy 0.5 100.00")
    else:
        typer.echo(f"gateway not listening on {listen} after 60 s; see its log", err=True)


async def _watch_children(group: ProcessGroup) -> None:
    while True:
        for child in group.exited():
            assert child.process is not None
            typer.echo(
                f"{child.name} exited with code {child.process.returncode}; log: {child.log_path}",
                err=True,
            )
        await trio.sleep(0.5)


async def _status_loop(cluster: ClusterConfig, every: float) -> None:
    secret = read_secret(cluster)
    clients = [ShardClient(m, client_id="clob-up-status", secret=secret) for m in cluster.markets]
    try:
        while True:
            await trio.sleep(every)
            typer.echo(" | ".join([await _market_status(client) for client in clients]))
    finally:
        with trio.CancelScope(shield=True):
            for client in clients:
                await client.aclose()


async def _market_status(client: ShardClient) -> str:
    statuses = await client.status()
    up_count = f"{sum(s.reachable for s in statuses)}/{len(statuses)} up"
    leader = next((s for s in statuses if s.role == "leader"), None)
    if leader is None:
        return f"{client.market.name}: no leader ({up_count})"
    return (
        f"{client.market.name}: leader {leader.name} term {leader.term} "
        f"seq {leader.applied_seq} ({up_count})"
    )

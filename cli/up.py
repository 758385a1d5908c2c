"""``clob up``: run the whole local cluster in the foreground until Ctrl-C.

Starts every market's replica group (``clob node`` per replica) and a gateway
(``clob gateway``) as separate OS processes, each logging to
``<keys dir>/logs/NAME.log``; creates the demo users alice and bob on first
start and prints their API keys; prints a one-line status every few seconds
(from the replicas' status API); on Ctrl-C or SIGTERM it stops every child
(SIGTERM, a grace period, then SIGKILL). ``--local-engine`` runs only the
gateway, on in-process engines.

A topology with ``[tls]`` is run as it is (the status probes present the
client certificate; a gateway with a certificate serves wss://). ``--tls``
turns TLS on for a topology without it: a local CA and every certificate are
made on first start under ``<keys dir>/tls`` (missing ones later, with the
same CA), and the cluster runs from ``<keys dir>/cluster-tls.toml``, the
topology with those files filled in.
"""

from __future__ import annotations

import signal
from pathlib import Path

import trio
import typer

from cli.apps import app
from cli.certs import CertificateError, create_certificates, plan, with_certificates
from cli.gateway import DEFAULT_CONFIG, config_file, load_cluster
from cli.processes import ProcessGroup, clob_command, wait_listening
from config.render import write_config
from config.schema import ClusterConfig
from config.secret import create_secret, read_secret
from gateway.auth import KeyStore
from shard.node.client import ShardClient
from shard.node.tls import client_context, probe_context

DEMO_USERS = ("alice", "bob")


@app.command()
def up(
    config: str = typer.Option(DEFAULT_CONFIG, help="Cluster configuration (TOML)."),
    gateway_name: str = typer.Option("gw-1", "--gateway", help="Which gateway to start."),
    local_engine: bool = typer.Option(
        False, help="No replica processes: the gateway runs in-process engines."
    ),
    status_every: float = typer.Option(5.0, help="Seconds between status lines."),
    tls: bool = typer.Option(
        False,
        "--tls",
        help="Mutual TLS on every replica link and wss:// at the gateway, with a local CA "
        "made on first start (a topology with [tls] needs no flag).",
    ),
) -> None:
    """Start every replica group and a gateway (ws://127.0.0.1:8700/ by default)."""
    cluster = load_cluster(config)
    config_path = str(config_file(config))
    if tls and cluster.tls is None:
        try:
            cluster, config_path = _with_local_tls(cluster)
        except CertificateError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
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
    url = f"{'wss' if gateway.cert_file else 'ws'}://{gateway.listen}/"
    trio.run(_run, cluster, group, url, local_engine, status_every)


def _with_local_tls(cluster: ClusterConfig) -> tuple[ClusterConfig, str]:
    """``cluster`` with TLS on, from certificates under ``<keys dir>/tls`` (made when
    missing), and the path of the topology file written for it."""
    base = Path(cluster.keys_file).parent
    out = base / "tls"
    if not (out / "ca.crt").exists():
        create_certificates(cluster, out)
        typer.echo(f"created a local CA and TLS certificates in {out} (clients: --ca-file)")
    else:
        missing = [leaf.stem for leaf in plan(cluster) if not (out / f"{leaf.stem}.crt").exists()]
        if missing:
            create_certificates(cluster, out, only=missing)
            typer.echo(f"created TLS certificates for {', '.join(missing)} in {out}")
    secured = with_certificates(cluster, out)
    return secured, str(write_config(secured, base / "cluster-tls.toml"))


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
    url: str,
    local_engine: bool,
    status_every: float,
) -> None:
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await group.start_all()
                nursery.start_soon(_announce, url, cluster)
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


async def _announce(url: str, cluster: ClusterConfig) -> None:
    secure = url.startswith("wss://")
    listen = url.split("://", 1)[1].rstrip("/")
    if await wait_listening(listen, 60, tls=probe_context() if secure else None):
        typer.echo(f"gateway ready on {url}  (Ctrl-C stops everything)")
        options = ""
        if secure:
            ca = cluster.tls.ca_file if cluster.tls is not None else "<the CA file>"
            options = f" --url {url} --ca-file {ca}"
        typer.echo(f"try: CLOB_API_KEY=<alice's key> clob order BTC-USD buy 0.5 100.00{options}")
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
    secret, tls = read_secret(cluster), client_context(cluster)
    clients = [
        ShardClient(m, client_id="clob-up-status", secret=secret, tls=tls) for m in cluster.markets
    ]
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

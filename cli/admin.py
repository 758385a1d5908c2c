"""``clob admin status|add-replica|remove-replica|transfer-leader|snapshot``: operate groups.

Every command talks to the replicas over the shard client protocol
(:class:`~shard.node.client.ShardClient`), so it works from any machine that
can reach their client addresses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import trio
import typer

from cli.apps import admin_app
from config.load import ConfigError, load_config
from config.schema import ClusterConfig, MarketConfig
from config.secret import SecretError, create_secret, read_secret
from shard.node.api import NodeStatus, ShardError, Unavailable
from shard.node.client import ShardClient
from shard.node.tls import TlsError, client_context

CONFIG_HELP = "Topology file (TOML)."


def _cluster(config: str) -> ClusterConfig:
    try:
        return load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def _client(cluster: ClusterConfig, market: MarketConfig) -> ShardClient:
    """A client of ``market``'s group that proves the cluster secret and presents the TLS
    client certificate, when they are configured."""
    try:
        secret = read_secret(cluster)
        tls = client_context(cluster)
    except (SecretError, TlsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return ShardClient(market, "clob-admin", secret=secret, tls=tls)


def _market(cluster: ClusterConfig, market: str | None, node: str | None) -> MarketConfig:
    if market is not None:
        found = cluster.market(market)
        if found is None:
            raise typer.BadParameter(f"no market {market!r}", param_hint="--market")
        return found
    if node is not None:
        replica = cluster.replica(node)
        if replica is None:
            raise typer.BadParameter(f"no replica {node!r}", param_hint="--node")
        return replica[0]
    raise typer.BadParameter("give --market (or --node)", param_hint="--market")


def digest_agreement(statuses: list[NodeStatus]) -> str:
    """``agree``, ``DIVERGED``, or ``pending`` when no two replicas digested the same seq."""
    if any(s.diverged for s in statuses):
        return "DIVERGED (" + ", ".join(s.name for s in statuses if s.diverged) + ")"
    by_seq: dict[int, set[str]] = {}
    for s in statuses:
        if s.reachable and s.digest is not None:
            by_seq.setdefault(s.digest_seq, set()).add(s.digest)
    shared = {seq: d for seq, d in by_seq.items() if seq > 0}
    if any(len(d) > 1 for d in shared.values()):
        return "DIVERGED (different digests at the same seq)"
    compared = [seq for seq in shared if sum(s.digest_seq == seq for s in statuses) > 1]
    return f"agree (seq {max(compared)})" if compared else "pending (no common digest seq yet)"


def _format_status(market: MarketConfig, statuses: list[NodeStatus]) -> str:
    leader = next((s for s in statuses if s.role == "leader"), None)
    lines = [
        f"{market.name}: leader {leader.name if leader else 'NONE'}"
        f" term {leader.term if leader else '-'}; digests {digest_agreement(statuses)}"
    ]
    for s in statuses:
        if not s.reachable:
            lines.append(f"  {s.name:<16} UNREACHABLE")
            continue
        lag = leader.lag.get(s.name) if leader is not None and s is not leader else None
        lines.append(
            f"  {s.name:<16} {s.role:<10} term {s.term:<4} commit {s.commit_index:<9}"
            f" applied {s.applied_index:<9} seq {s.applied_seq:<9}"
            f" lag {'-' if lag is None else lag:<6} digest {s.digest or '-'}@{s.digest_seq}"
            + ("  DIVERGED" if s.diverged else "")
        )
    return "\n".join(lines)


@admin_app.command("status")
def status(
    config: str = typer.Option(..., "--config", help=CONFIG_HELP),
    market: str | None = typer.Option(None, help="Only this market (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Each group's leader, term, commit/apply index, each replica's lag, digest agreement."""
    cluster = _cluster(config)
    markets = [_market(cluster, market, None)] if market else list(cluster.markets)

    async def run() -> dict[str, list[NodeStatus]]:
        out: dict[str, list[NodeStatus]] = {}
        for m in markets:
            async with _client(cluster, m) as client:
                out[m.name] = await client.status()
        return out

    found = trio.run(run)
    if as_json:
        doc = {
            name: {
                "replicas": [attrs.asdict(s) for s in statuses],
                "digests": digest_agreement(statuses),
            }
            for name, statuses in found.items()
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    for m in markets:
        typer.echo(_format_status(m, found[m.name]))


async def _admin_remove(client: ShardClient, node: str) -> dict[str, Any]:
    async with client:
        return await client.admin("remove_replica", node=node)


def _run_or_exit(fn: Any, *args: Any) -> Any:
    try:
        return trio.run(fn, *args)
    except (ShardError, trio.TooSlowError) as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc


@admin_app.command("add-replica")
def add_replica(
    config: str = typer.Option(..., "--config", help=CONFIG_HELP),
    node: str = typer.Option(..., "--node", help="The replica to add (join = true in config)."),
    market: str | None = typer.Option(None, help="Its market (default: from the config)."),
    timeout: float = typer.Option(120.0, help="Seconds to wait for the learner to catch up."),
) -> None:
    """Add a replica as a learner, wait until it has caught up, then promote it to voter."""
    cluster = _cluster(config)
    m = _market(cluster, market, node)

    async def run() -> None:
        async with _client(cluster, m) as client:
            reply = await client.admin("add_replica", node=node)
            typer.echo(f"{node} added as learner at log index {reply['index']}")
            with trio.fail_after(timeout):
                while True:
                    try:
                        reply = await client.admin("promote_replica", node=node)
                        break
                    except Unavailable as exc:
                        if "caught up" not in str(exc) and "uncommitted" not in str(exc):
                            raise
                    statuses = {s.name: s for s in await client.status()}
                    leader = next((s for s in statuses.values() if s.role == "leader"), None)
                    lag = leader.lag.get(node, "?") if leader else "?"
                    typer.echo(f"waiting for {node} to catch up (lag {lag})")
                    await trio.sleep(0.5)
            typer.echo(f"{node} promoted to voter at log index {reply['index']}")

    _run_or_exit(run)


@admin_app.command("remove-replica")
def remove_replica(
    config: str = typer.Option(..., "--config", help=CONFIG_HELP),
    node: str = typer.Option(..., "--node", help="The replica to remove."),
    market: str | None = typer.Option(None, help="Its market (default: from the config)."),
) -> None:
    """Remove a replica (voter or learner) from its group."""
    cluster = _cluster(config)
    m = _market(cluster, market, node)
    reply = _run_or_exit(_admin_remove, _client(cluster, m), node)
    typer.echo(f"{node} removed at log index {reply['index']}")


@admin_app.command("transfer-leader")
def transfer_leader(
    config: str = typer.Option(..., "--config", help=CONFIG_HELP),
    to: str = typer.Option(..., "--to", help="The replica that should lead."),
    market: str | None = typer.Option(None, help="Its market (default: from the config)."),
    timeout: float = typer.Option(10.0, help="Seconds to wait for the new leader."),
) -> None:
    """Hand leadership to another voter and wait until it leads."""
    cluster = _cluster(config)
    m = _market(cluster, market, to)

    async def run() -> None:
        async with _client(cluster, m) as client:
            await client.admin("transfer_leader", target=to)
            with trio.fail_after(timeout):
                while True:
                    statuses = await client.status()
                    if any(s.name == to and s.role == "leader" for s in statuses):
                        break
                    await trio.sleep(0.05)
        typer.echo(f"{to} is now the leader of {m.name}")

    _run_or_exit(run)


@admin_app.command("snapshot")
def snapshot(
    config: str = typer.Option(..., "--config", help=CONFIG_HELP),
    market: str | None = typer.Option(None, help="Market (default: from --node)."),
    node: str | None = typer.Option(None, help="Only this replica (default: all of the group)."),
) -> None:
    """Snapshot now (to disk) and print each replica's index, seq and state digest."""
    cluster = _cluster(config)
    m = _market(cluster, market, node)
    names = [node] if node else [r.name for r in m.replicas if not r.join]

    async def run() -> list[tuple[str, dict[str, Any] | str]]:
        out: list[tuple[str, dict[str, Any] | str]] = []
        async with _client(cluster, m) as client:
            for name in names:
                try:
                    with trio.fail_after(10):
                        out.append((name, await client.admin_on(name, "snapshot")))
                except (ShardError, OSError, trio.TooSlowError) as exc:
                    out.append((name, f"failed: {type(exc).__name__}: {exc}"))
        return out

    for name, reply in _run_or_exit(run):
        if isinstance(reply, str):
            typer.echo(f"{name}: {reply}")
        else:
            typer.echo(
                f"{name}: index {reply['index']} seq {reply['seq']} digest {reply['digest']}"
            )


@admin_app.command("create-secret")
def create_secret_file(config: str = typer.Option(..., "--config", help=CONFIG_HELP)) -> None:
    """Create the cluster secret file the topology names (``secret_file``), if missing.

    Copy the same file to every machine of the cluster (replicas, gateways, admin).
    """
    cluster = _cluster(config)
    if cluster.secret_file is None:
        typer.echo(f"{config} names no secret_file: replicas accept any connection", err=True)
        raise typer.Exit(2)
    path = Path(cluster.secret_file)
    made = create_secret(path)
    typer.echo(f"{'created' if made else 'kept the existing'} cluster secret {path}")

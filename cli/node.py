"""``clob node --config FILE --node NAME``: run one replica process."""

from __future__ import annotations

import typer

from cli.apps import app
from config.load import ConfigError, load_config
from config.secret import SecretError, read_secret
from shard.node.node import main as run_node_main
from shard.node.options import ReplicaOptions
from shard.node.tls import TlsError, replica_contexts
from shard.observability import configure_logging


@app.command("node")
def node(
    config: str = typer.Option(..., "--config", help="Topology file (TOML)."),
    name: str = typer.Option(..., "--node", help="Replica name from the topology."),
    log_level: str = typer.Option("INFO", help="Log level."),
    json_logs: bool = typer.Option(False, "--json-logs", help="One JSON object per log line."),
    snapshot_every: int = typer.Option(
        ReplicaOptions().snapshot_every, help="Applied log entries between snapshots."
    ),
) -> None:
    """Run one replica of a market's replica group until SIGTERM/SIGINT."""
    configure_logging(log_level, json=json_logs)
    try:
        cluster = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if cluster.replica(name) is None:
        typer.echo(f"{config}: no replica named {name!r}", err=True)
        raise typer.Exit(2)
    try:
        read_secret(cluster)  # the runtime reads it again; a bad file is a usage error here
        replica_contexts(cluster, name)  # and its TLS files
    except (SecretError, TlsError) as exc:
        typer.echo(f"{config}: {exc}", err=True)
        raise typer.Exit(2) from exc
    run_node_main(config, name, ReplicaOptions(snapshot_every=snapshot_every))

"""``clob gateway``: run one WebSocket gateway of the configured cluster."""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

import trio
import typer

import config as config_package
from cli.apps import app
from config.load import ConfigError, load_config
from config.schema import ClusterConfig
from config.secret import SecretError, read_secret
from gateway.assembly import run_gateway
from gateway.settings import GatewaySettings
from shard.node.tls import TlsError, client_context, gateway_context
from shard.observability import configure_logging

DEFAULT_CONFIG = "config/local.toml"


def config_file(path: str) -> Path:
    """``path``, or the packaged local.toml when the default is asked for and absent."""
    file = Path(path)
    if not file.exists() and path == DEFAULT_CONFIG:
        file = Path(config_package.__file__).parent / "local.toml"
    return file


def load_cluster(path: str) -> ClusterConfig:
    """The configuration at ``path``; a bad file is a usage error."""
    try:
        return load_config(config_file(path))
    except (ConfigError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc


@app.command()
def gateway(
    config: str = typer.Option(DEFAULT_CONFIG, help="Cluster configuration (TOML)."),
    name: str = typer.Option("gw-1", help="Which [[gateways]] entry to run."),
    local_engine: bool = typer.Option(
        False, help="Serve in-process engines instead of the replica groups (dev/demo)."
    ),
    request_timeout: float = typer.Option(
        GatewaySettings().request_timeout_seconds,
        help="Seconds a command may take before the client gets `timeout`.",
    ),
    log_level: str = typer.Option("INFO", help="Log level."),
    json_logs: bool = typer.Option(False, "--json-logs", help="Log one JSON object per line."),
) -> None:
    """Serve the client WebSocket API for every market of the cluster."""
    configure_logging(log_level, json=json_logs)
    cluster = load_cluster(config)
    try:
        if not local_engine:
            read_secret(cluster)  # a missing or short secret file is a usage error
            client_context(cluster)  # and so are bad TLS files
        if any(g.name == name for g in cluster.gateways):
            gateway_context(cluster, name)
    except (SecretError, TlsError) as exc:
        raise typer.BadParameter(f"{config}: {exc}", param_hint="--config") from exc
    settings = GatewaySettings(request_timeout_seconds=request_timeout)
    trio.run(_serve, cluster, name, local_engine, settings)  # until SIGTERM or Ctrl-C


async def _serve(
    cluster: ClusterConfig, name: str, local_engine: bool, settings: GatewaySettings
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(
                    partial(
                        run_gateway, cluster, name, local_engine=local_engine, settings=settings
                    )
                )
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--name") from exc
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break

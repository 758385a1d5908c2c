"""``clob admin keys``: create, revoke and list API keys in the configured keys file."""

from __future__ import annotations

import typer

from cli.apps import keys_app
from cli.gateway import DEFAULT_CONFIG, load_cluster
from gateway.auth import KeyStore


def _store(config: str) -> KeyStore:
    return KeyStore(load_cluster(config).keys_file)


@keys_app.command("create")
def create(
    user: str = typer.Argument(..., help="The user the key authenticates as."),
    config: str = typer.Option(DEFAULT_CONFIG, help="Cluster configuration (names the keys file)."),
) -> None:
    """Create a key for USER and print it on stdout (it is stored only hashed: keep it now)."""
    store = _store(config)
    try:
        key = store.create(user)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="USER") from exc
    # the key alone on stdout, so scripts can take it: KEY=$(clob admin keys create alice)
    typer.echo(f"created key {key.key_id} for {key.user} (shown once, stored hashed)", err=True)
    typer.echo(key.api_key)


@keys_app.command("revoke")
def revoke(
    key_id_or_user: str = typer.Argument(..., help="A key id, or a user (all their keys)."),
    config: str = typer.Option(DEFAULT_CONFIG, help="Cluster configuration (names the keys file)."),
) -> None:
    """Revoke one key by id, or every key of a user; later auth with them fails."""
    gone = _store(config).revoke(key_id_or_user)
    if not gone:
        typer.echo(f"no key or user {key_id_or_user!r}", err=True)
        raise typer.Exit(1)
    for record in gone:
        typer.echo(f"revoked {record.key_id} ({record.user})")


@keys_app.command("list")
def list_keys(
    config: str = typer.Option(DEFAULT_CONFIG, help="Cluster configuration (names the keys file)."),
) -> None:
    """List key ids and their users (the keys themselves are not stored)."""
    for record in _store(config).records():
        typer.echo(f"{record.key_id}  {record.user}  created {record.created}")

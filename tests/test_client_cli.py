"""The CLI around the gateway: ``clob admin keys`` and the client commands."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import trio
from typer.testing import CliRunner

import cli.client
import cli.gateway
import cli.keys  # noqa: F401
from chaos.topology import build_cluster
from cli.apps import app
from cli.processes import clob_command, wait_listening
from config.render import write_config
from gateway.auth import KeyStore


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    cluster = build_cluster(tmp_path, markets=(("BTC-USD", "0.01", "0.001"),), gateways=1)
    return write_config(cluster, tmp_path / "cluster.toml")


def test_keys_create_list_revoke(config_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["admin", "keys", "create", "carol", "--config", str(config_path)])
    assert created.exit_code == 0, created.output
    api_key = created.stdout.strip()
    store = KeyStore(tmp_path / "keys.json")
    assert store.verify(api_key) == "carol"
    listed = runner.invoke(app, ["admin", "keys", "list", "--config", str(config_path)])
    assert "carol" in listed.output and api_key not in listed.output
    revoked = runner.invoke(app, ["admin", "keys", "revoke", "carol", "--config", str(config_path)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert store.verify(api_key) is None
    again = runner.invoke(app, ["admin", "keys", "revoke", "carol", "--config", str(config_path)])
    assert again.exit_code == 1


@pytest.fixture
def local_gateway(config_path: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A ``clob gateway --local-engine`` process; yields its URL and an API key."""
    api_key = KeyStore(tmp_path / "keys.json").create("dave").api_key
    text = config_path.read_text()
    listen = text.split("[[gateways]]")[1].split('listen = "')[1].split('"')[0]
    argv = [*clob_command(), "gateway", "--config", str(config_path), "--name", "gw-1"]
    log = (tmp_path / "gw.log").open("wb")
    process = subprocess.Popen([*argv, "--local-engine"], stdout=log, stderr=subprocess.STDOUT)
    try:
        assert trio.run(wait_listening, listen, 60.0), (tmp_path / "gw.log").read_text()
        yield f"ws://{listen}/", api_key
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.mark.processes
def test_client_commands_against_a_gateway(local_gateway: tuple[str, str]) -> None:
    url, key = local_gateway
    runner = CliRunner()

    def clob(*args: str) -> object:
        result = runner.invoke(app, [*args, "--url", url], env={"CLOB_API_KEY": key})
        assert result.exit_code == 0, result.output
        return orjson.loads(result.stdout)

    placed = clob("order", "BTC-USD", "sell", "1", "100.00", "--client-order-id", "c1")
    assert isinstance(placed, dict) and placed["events"][0]["type"] == "accepted"
    [order] = clob("orders")  # type: ignore[misc]
    assert order["client_order_id"] == "c1"
    book = clob("book", "BTC-USD")
    assert isinstance(book, dict) and book["asks"] == [["100.00", "1.000"]]
    clob("amend", "BTC-USD", "--client-order-id", "c1", "--qty", "0.5")
    cancelled = clob("cancel", "BTC-USD", "--client-order-id", "c1")
    assert isinstance(cancelled, dict) and cancelled["events"][0]["remaining_qty"] == "0.500"
    assert clob("orders") == []
    fills = clob("fills", "BTC-USD")
    assert isinstance(fills, dict) and fills["fills"] == [] and fills["next"] is None
    refused = runner.invoke(app, ["orders", "--url", url, "--key", "nope.nope"])
    assert refused.exit_code == 1 and "unauthenticated" in refused.output

"""``clob up``: starts the cluster's processes, prints demo keys, stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import attrs
import pytest
import trio

from chaos.topology import build_cluster
from cli.processes import clob_command
from config.load import load_config
from config.render import write_config
from gateway.client import open_client

pytestmark = pytest.mark.processes


@pytest.mark.parametrize(
    ("local_engine", "tls"),
    [(True, False), (False, False), (False, True)],
    ids=["local-engine", "replicas", "replicas-tls"],
)
async def test_up_serves_demo_users_and_stops_on_ctrl_c(
    tmp_path: Path, local_engine: bool, tls: bool
) -> None:
    cluster = build_cluster(
        tmp_path, markets=(("BTC-USD", "0.01", "0.001"),), gateways=1, durability="none"
    )
    # a secret file that does not exist yet: `clob up` creates it, as on a first `make run`
    secret = tmp_path / "var" / "cluster.secret"
    cluster = attrs.evolve(cluster, secret_file=str(secret))
    config = write_config(cluster, tmp_path / "cluster.toml")
    argv = [*clob_command(), "up", "--config", str(config), "--status-every", "0.5"]
    if local_engine:
        argv.append("--local-engine")
    if tls:
        argv.append("--tls")
    out = tmp_path / "up.out"
    with out.open("wb") as sink:
        process = await trio.lowlevel.open_process(argv, stdout=sink, stderr=subprocess.STDOUT)
        try:
            with trio.fail_after(90):
                while "gateway ready" not in out.read_text():
                    assert process.returncode is None, out.read_text()
                    await trio.sleep(0.1)
            keys = {
                line.split()[2].rstrip(":"): line.split()[-1]
                for line in out.read_text().splitlines()
                if line.startswith("demo user") and "API key" in line
            }
            assert set(keys) == {"alice", "bob"}
            scheme = "wss" if tls else "ws"
            url = f"{scheme}://{cluster.gateways[0].listen}/"
            assert f"gateway ready on {url}" in out.read_text()
            # the local CA made on first start, next to the keys file
            ca = str(Path(cluster.keys_file).parent / "tls" / "ca.crt") if tls else None
            with trio.fail_after(60):
                async with open_client(url, api_key=keys["alice"], ca_file=ca) as alice:
                    while not all(m["status"] == "open" for m in await alice.markets()):
                        await trio.sleep(0.1)
                    placed = await alice.new_order("BTC-USD", "buy", "1", "10.00")
                    assert placed["events"][0]["type"] == "accepted"
            if not local_engine:
                with trio.fail_after(30):
                    while "leader" not in out.read_text().split("gateway ready")[-1]:
                        await trio.sleep(0.1)
            process.send_signal(signal.SIGINT)
            with trio.fail_after(30):
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = out.read_text()
    assert "stopped" in text and "killed" not in text, text
    assert f"created the cluster secret {secret}" in text and secret.stat().st_size > 16
    assert process.returncode == 0, text
    if tls:
        # the replicas ran over mutual TLS: the topology they were given says so
        secured = load_config(Path(cluster.keys_file).parent / "cluster-tls.toml")
        assert secured.tls is not None and secured.gateways[0].cert_file is not None
        assert all(r.cert_file for m in secured.markets for r in m.replicas)

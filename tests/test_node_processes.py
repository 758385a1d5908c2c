"""Real `clob node` processes: clean SIGTERM shutdown, and the failover script end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from shard.node.client import ShardClient
from tests.node_cluster import write_topology

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.processes


def node_argv(config: Path, name: str) -> list[str]:
    code = "from cli.main import main; main()"
    return [sys.executable, "-c", code, "node", "--config", str(config), "--node", name]


async def http_get(address: str) -> str:
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks = []
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):
                chunks.append(data)
    return b"".join(chunks).decode()


async def test_single_replica_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    path, cluster = write_topology(tmp_path, replicas=1, durability="fsync", metrics=True)
    market = cluster.markets[0]
    log = (tmp_path / "node.log").open("wb")
    process = await trio.lowlevel.open_process(
        node_argv(path, market.replicas[0].name), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        async with ShardClient(market, "t", retry_for=30.0) as client:
            with trio.fail_after(30):
                while True:
                    statuses = await client.status()
                    if statuses[0].role == "leader" and statuses[0].applied_seq >= 1:
                        break
                    await trio.sleep(0.1)
            result = await client.query({"type": "book", "market": market.name})
            assert result.events[0]["bids"] == []
        leader_line = 'clob_raft_role{market="BTC-USD",node="btc-usd-1",role="leader"} 1.0'
        with trio.fail_after(10):
            while leader_line not in (metrics := await http_get(market.replicas[0].metrics or "")):
                await trio.sleep(0.05)
        assert 'clob_applied_seq{market="BTC-USD",node="btc-usd-1"}' in metrics
        assert "clob_fsync_seconds_bucket" in metrics
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await process.wait()
        assert code == 0
        text = (tmp_path / "node.log").read_text()
        assert "shutting down" in text and "signal=SIGTERM" in text
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


async def test_failover_script(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "replica-cluster-failover-test.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    with trio.fail_after(280):
        result = await trio.run_process(
            [str(script), str(tmp_path / "work")],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    assert "[failover-test] PASS" in output
    assert "all 3 replicas identical" in output

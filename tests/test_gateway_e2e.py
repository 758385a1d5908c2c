"""End to end through real processes: replica groups (``clob node``) and a gateway.

Marked ``processes``. Skipped while the node runtime (``clob node``) is not
available in this checkout.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from chaos.topology import build_cluster
from cli.processes import ProcessGroup, clob_command, wait_listening
from config.render import write_config
from config.schema import ClusterConfig
from gateway.auth import KeyStore
from gateway.client import ClientError, GatewayClient, open_client
from shard.node.client import ShardClient

pytestmark = pytest.mark.processes

MARKETS = (("BTC-USD", "0.01", "0.001"),)


@functools.cache
def _node_available() -> bool:
    done = subprocess.run(
        [*clob_command(), "node", "--help"], capture_output=True, timeout=60, check=False
    )
    return done.returncode == 0


@attrs.define
class Cluster:
    config: ClusterConfig
    group: ProcessGroup
    url: str
    keys: dict[str, str]

    async def leader(self, market: str) -> str:
        spec = self.config.market(market)
        assert spec is not None
        async with ShardClient(spec, client_id="e2e-status") as client:
            with trio.fail_after(30):
                while True:
                    for status in await client.status():
                        if status.role == "leader":
                            return status.name
                    await trio.sleep(0.1)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    if not _node_available():
        pytest.skip("the node runtime (clob node) is not available yet")
    config = build_cluster(tmp_path, markets=MARKETS, gateways=1, durability="none")
    path = write_config(config, tmp_path / "cluster.toml")
    store = KeyStore(config.keys_file)
    keys = {user: store.create(user).api_key for user in ("alice", "bob")}
    group = ProcessGroup()
    clob = clob_command()
    for market in config.markets:
        for replica in market.replicas:
            argv = [*clob, "node", "--config", str(path), "--node", replica.name]
            group.add(replica.name, argv, tmp_path / "logs" / f"{replica.name}.log")
    gateway = config.gateways[0]
    # a short bound, so that clients see the leader change as timeouts rather than a stall
    argv = [*clob, "gateway", "--config", str(path), "--name", gateway.name]
    argv += ["--request-timeout", "0.25"]
    group.add(gateway.name, argv, tmp_path / "logs" / f"{gateway.name}.log")
    try:
        await group.start_all()
        assert await wait_listening(gateway.listen, 60), "the gateway did not start"
        url = f"ws://{gateway.listen}/"
        async with open_client(url) as client:
            with trio.fail_after(60):
                while not all(m["status"] == "open" for m in await client.markets()):
                    await trio.sleep(0.1)
        yield Cluster(config, group, url, keys)
    finally:
        await group.stop_all()


async def test_order_lifecycle_through_a_real_cluster(cluster: Cluster) -> None:
    async with (
        open_client(cluster.url, api_key=cluster.keys["alice"]) as alice,
        open_client(cluster.url, api_key=cluster.keys["bob"]) as bob,
        bob.book_stream("BTC-USD") as book,
    ):
        first = await book.__anext__()
        placed = await alice.new_order("BTC-USD", "sell", "1", "100.00", client_order_id="s1")
        assert placed["events"][0]["type"] == "accepted"
        taken = await bob.new_order("BTC-USD", "buy", "0.25", "100.00")
        fill = next(e for e in taken["events"] if e["type"] == "fill")
        assert fill["taker_user"] == "bob" and "maker_user" not in fill
        [mine] = await alice.orders()
        assert mine["client_order_id"] == "s1" and mine["qty"].startswith("0.75")
        assert [f["liquidity"] for f in (await alice.fills())["fills"]] == ["maker"]
        cancelled = await alice.cancel("BTC-USD", client_order_id="s1")
        assert cancelled["events"][0]["type"] == "cancelled"
        assert await alice.orders() == []
        with trio.fail_after(10):
            async for view in book:
                if view.seq >= cancelled["seq"]:
                    break
        assert view.seq > first.seq and view.asks == () and view.bids == ()


async def _place_reliably(
    client: GatewayClient, coid: str, price: str, seen: list[str]
) -> dict[str, Any]:
    """Place one order, retrying on retryable errors; returns its (single) live order."""
    with trio.fail_after(60):
        while True:
            try:
                result = await client.new_order("BTC-USD", "buy", "1", price, client_order_id=coid)
                event = result["events"][0]
                if event["type"] == "rejected":
                    # only a retry of an order that was applied after all may be refused
                    assert event["reason"] == "duplicate_client_order_id", event
            except ClientError as exc:
                assert exc.retryable, exc
                seen.append(exc.code)
                await trio.sleep(0.05)
                if not exc.indeterminate:
                    continue
            try:
                live = [o for o in await client.orders("BTC-USD") if o["client_order_id"] == coid]
            except ClientError as exc:
                assert exc.retryable, exc
                seen.append(exc.code)
                continue
            if live:
                assert len(live) == 1
                return live[0]


async def test_kill_9_of_the_leader_loses_no_acknowledged_order(cluster: Cluster) -> None:
    count = 120
    seen: list[str] = []
    acked: dict[str, int] = {}
    async with (
        open_client(cluster.url, api_key=cluster.keys["alice"]) as alice,
        open_client(cluster.url) as watcher,
        watcher.book_stream("BTC-USD") as book,
    ):
        for i in range(count):
            if i == count // 3:
                leader = await cluster.leader("BTC-USD")
                await cluster.group.kill(leader)
            order = await _place_reliably(alice, f"o{i}", f"{10 + i * 0.01:.2f}", seen)
            acked[order["client_order_id"]] = order["order_id"]
        orders = await alice.orders("BTC-USD")
        # the market-data stream followed the group through the leader change
        final = await alice.book("BTC-USD", depth=1000)
        with trio.fail_after(30):
            async for view in book:
                if view.seq >= final["seq"]:
                    break
        assert view.seq == final["seq"]
        assert list(view.bids) == [tuple(level) for level in final["bids"]]
        assert len(view.bids) == count
    assert sorted(o["client_order_id"] for o in orders) == sorted(f"o{i}" for i in range(count))
    assert {o["client_order_id"]: o["order_id"] for o in orders} == acked
    assert len({o["order_id"] for o in orders}) == count  # none applied twice
    assert set(seen) <= {"unavailable", "timeout", "disconnected", "rate_limited"}
    assert seen  # the leader change was visible: errors, then success
    new_leader = await cluster.leader("BTC-USD")
    assert new_leader != leader

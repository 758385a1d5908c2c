"""End to end through real processes: replica groups (``clob node``) and a gateway.

Marked ``processes``. Skipped while the node runtime (``clob node``) is not
available in this checkout.
"""

from __future__ import annotations

import contextlib
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
from config.secret import read_secret
from gateway.auth import KeyStore
from gateway.client import ClientError, GatewayClient, open_client
from shard.node.api import Unavailable
from shard.node.client import ShardClient
from tests.gateway_harness import call, raw, recv, send

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
        async with ShardClient(
            spec, client_id="e2e-status", secret=read_secret(self.config)
        ) as client:
            with trio.fail_after(30):
                while True:
                    for status in await client.status():
                        if status.role == "leader":
                            return status.name
                    await trio.sleep(0.1)

    async def wait_gateway_open(self) -> None:
        """Until the gateway listens and follows every market."""
        assert await wait_listening(self.config.gateways[0].listen, 60), "no gateway"
        async with open_client(self.url) as client:
            with trio.fail_after(60):
                while not all(m["status"] == "open" for m in await client.markets()):
                    await trio.sleep(0.1)


@contextlib.asynccontextmanager
async def open_cluster(
    tmp_path: Path, markets: tuple[tuple[str, str, str], ...] = MARKETS
) -> AsyncIterator[Cluster]:
    """Every market's replica group and one gateway as processes; stopped on exit."""
    if not _node_available():
        pytest.skip("the node runtime (clob node) is not available yet")
    config = build_cluster(tmp_path, markets=markets, gateways=1, durability="none", secret=True)
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
        cluster = Cluster(config, group, f"ws://{gateway.listen}/", keys)
        await cluster.wait_gateway_open()
        yield cluster
    finally:
        await group.stop_all()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(tmp_path) as running:
        yield running


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
    # the replicas serve only connections that prove the cluster secret (the gateway does)
    spec = cluster.config.market("BTC-USD")
    assert spec is not None and cluster.config.secret_file is not None
    async with ShardClient(spec, "intruder", retry_for=0.5) as intruder:
        with pytest.raises(Unavailable, match="refused this client"):
            await intruder.query({"type": "orders", "user": "alice"})


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


async def test_pipelined_orders_through_a_leader_kill_keep_order_and_apply_once(
    cluster: Cluster,
) -> None:
    """Bursts of orders in flight on one connection (so its lane sends them as batches)."""
    rounds, burst = 8, 25
    replies: dict[int, dict[str, Any]] = {}
    async with raw(cluster.url) as ws:
        await call(ws, {"op": "auth", "id": 0, "api_key": cluster.keys["alice"]})
        for r in range(rounds):
            ids = range(r * burst + 1, (r + 1) * burst + 1)
            for i in ids:
                order = {"market": "BTC-USD", "side": "buy", "qty": "1", "order_type": "limit"}
                order.update(price=f"{10 + i * 0.01:.2f}", client_order_id=f"p{i}")
                await send(ws, {"op": "new_order", "id": i, **order})
            if r == 2:
                leader = await cluster.leader("BTC-USD")
                await cluster.group.kill(leader)
            for _ in ids:
                while "channel" in (reply := await recv(ws, timeout=30)):
                    pass
                replies[reply["id"]] = reply
            if not all(replies[i]["ok"] for i in ids):
                await trio.sleep(0.5)  # let the group elect a leader before the next burst
    async with open_client(cluster.url, api_key=cluster.keys["alice"]) as alice:
        with trio.fail_after(30):
            while True:
                try:
                    orders = await alice.orders("BTC-USD")
                    break
                except ClientError as exc:
                    assert exc.retryable, exc
                    await trio.sleep(0.1)
    assert sorted(replies) == list(range(1, rounds * burst + 1))  # one reply per request
    live = {o["client_order_id"]: o["order_id"] for o in orders}
    assert len(live) == len(orders)  # no order twice
    acked = {}
    for i, reply in replies.items():
        if reply["ok"]:
            event = reply["result"]["events"][0]
            assert event["type"] == "accepted", event  # a retry applied twice would be refused
            acked[f"p{i}"] = event["order_id"]
        else:
            assert reply["error"]["code"] in {"timeout", "unavailable"}, reply
    assert {c: live.get(c) for c in acked} == acked  # nothing acknowledged was lost
    applied = sorted(live, key=lambda coid: int(coid[1:]))
    order_ids = [live[c] for c in applied]
    assert order_ids == sorted(order_ids)  # applied in the order sent, across the kill
    assert any(not r["ok"] for r in replies.values())  # the leader change was visible
    assert all(replies[i]["ok"] for i in range((rounds - 1) * burst + 1, rounds * burst + 1))


async def test_fills_across_markets_in_the_order_they_happened_after_a_gateway_restart(
    tmp_path: Path,
) -> None:
    """ENGINE.md: fills without a market come "in the order they happened, across markets".
    The markets are separate groups with separate seqs; their leaders stamp each batch with
    the time, which the replicas report, so a gateway that saw none of the trades (restarted
    here) still orders them: ETH-USD, then BTC-USD, then ETH-USD again, not by market name."""
    markets = (("BTC-USD", "0.01", "0.001"), ("ETH-USD", "0.01", "0.001"))
    async with open_cluster(tmp_path, markets) as running:
        async with (
            open_client(running.url, api_key=running.keys["alice"]) as alice,
            open_client(running.url, api_key=running.keys["bob"]) as bob,
        ):
            for market, price in (
                ("ETH-USD", "10.00"),
                ("BTC-USD", "100.00"),
                ("ETH-USD", "11.00"),
            ):
                await alice.new_order(market, "sell", "1", price)
                await bob.new_order(market, "buy", "1", price)
        gateway = running.config.gateways[0].name
        await running.group.kill(gateway)
        await running.group.start(gateway)
        await running.wait_gateway_open()
        async with open_client(running.url, api_key=running.keys["bob"]) as bob:
            fills = (await bob.fills())["fills"]
            assert [(f["market"], f["price"]) for f in fills] == [
                ("ETH-USD", "10.00"),
                ("BTC-USD", "100.00"),
                ("ETH-USD", "11.00"),
            ]
            assert [f["market"] for f in (await bob.fills(limit=2))["fills"]] == [
                "ETH-USD",
                "BTC-USD",
            ]
            one_market = await bob.fills("ETH-USD")
            assert "times" not in one_market  # the replicas' field stays inside
            assert [f["price"] for f in one_market["fills"]] == ["10.00", "11.00"]

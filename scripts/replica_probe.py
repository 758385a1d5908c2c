"""Probe a replica group from shell scripts (used by replica-cluster-failover-test.sh).

    replica_probe.py topology DIR [--replicas N]   write DIR/cluster.toml (free ports), print path
    replica_probe.py wait-leader CONFIG MARKET     print the leader once there is one
    replica_probe.py followers CONFIG MARKET       print the reachable followers
    replica_probe.py post CONFIG MARKET N TAG OUT  submit N orders, append acked ids to OUT
    replica_probe.py first-ack CONFIG MARKET TAG T  seconds from epoch T to an acknowledged order
    replica_probe.py check-orders CONFIG MARKET FILE...  every acked id is a live order
    replica_probe.py check-same CONFIG MARKET      all replicas at one seq, equal digests

Exits 1 with a message on stderr when a check fails.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import trio

from chaos.topology import build_cluster
from config.load import load_config
from config.render import write_config
from config.schema import MarketConfig
from shard.node.api import ShardError
from shard.node.client import ShardClient

USERS = 5


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    raise SystemExit(1)


def market_of(config: str, name: str) -> MarketConfig:
    market = load_config(config).market(name)
    if market is None:
        fail(f"no market {name} in {config}")
        raise AssertionError
    return market


def write_topology(directory: str, replicas: int) -> None:
    base = Path(directory).resolve()
    cluster = build_cluster(
        base, markets=[("BTC-USD", "0.01", "0.001")], replicas=replicas, gateways=0
    )
    print(write_config(cluster, base / "cluster.toml"))


def order(tag: str, i: int) -> dict[str, Any]:
    return {
        "type": "new_order",
        "market": "BTC-USD",
        "user": f"probe{i % USERS}",
        "client_order_id": f"{tag}-{i}",
        "side": "buy",
        "order_type": "limit",
        "price": f"{100 + i % 10}.00",
        "qty": "0.001",
    }


async def wait_leader(market: MarketConfig) -> str:
    async with ShardClient(market, "probe") as client:
        with trio.fail_after(30):
            while True:
                statuses = await client.status()
                leader = next((s for s in statuses if s.role == "leader"), None)
                if leader is not None and leader.applied_seq >= 1:
                    return leader.name
                await trio.sleep(0.1)


async def followers(market: MarketConfig) -> list[str]:
    async with ShardClient(market, "probe") as client:
        return [s.name for s in await client.status() if s.reachable and s.role == "follower"]


async def post(market: MarketConfig, count: int, tag: str, out: str) -> None:
    acked: list[str] = []
    async with ShardClient(market, f"probe-{tag}", retry_for=10.0) as client:

        async def one(i: int) -> None:
            result = await client.submit(order(tag, i))
            if result.events[0]["type"] != "accepted":
                fail(f"order {tag}-{i} not accepted: {result.events[0]}")
            acked.append(f"{tag}-{i}")

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
    with open(out, "a") as f:
        f.writelines(f"{a}\n" for a in acked)
    print(f"{len(acked)} acknowledged")


async def first_ack(market: MarketConfig, tag: str, since: float) -> None:
    """Seconds from ``since`` (epoch, e.g. when the leader was killed) to an acknowledgement."""
    async with ShardClient(market, f"probe-{tag}", retry_for=30.0) as client:
        await client.submit(order(tag, 0))
    print(f"{time.time() - since:.3f}")


async def check_orders(market: MarketConfig, files: list[str]) -> None:
    expected = {line.strip() for f in files for line in Path(f).read_text().splitlines()}
    expected.discard("")
    live: set[str] = set()
    async with ShardClient(market, "probe", retry_for=10.0) as client:
        for user in range(USERS):
            result = await client.query({"type": "orders", "user": f"probe{user}"})
            live |= {o["client_order_id"] for o in result.events[0]["orders"]}
    missing = expected - live
    if missing:
        fail(f"{len(missing)} acknowledged orders lost, e.g. {sorted(missing)[:5]}")
    print(f"all {len(expected)} acknowledged orders present")


async def check_same(market: MarketConfig) -> None:
    async with ShardClient(market, "probe") as client:
        with trio.fail_after(30):
            while True:
                statuses = await client.status()
                seqs = {(s.applied_seq, s.applied_index) for s in statuses if s.reachable}
                if all(s.reachable for s in statuses) and len(seqs) == 1:
                    break
                await trio.sleep(0.1)
        digests = {}
        for replica in market.replicas:
            try:
                reply = await client.admin_on(replica.name, "snapshot")
            except ShardError as exc:
                fail(f"{replica.name}: snapshot failed: {exc}")
            digests[replica.name] = (reply["seq"], reply["digest"])
    if len(set(digests.values())) != 1:
        fail(f"replicas differ: {digests}")
    seq, digest = next(iter(digests.values()))
    print(f"all {len(digests)} replicas identical at seq {seq} (digest {digest})")


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "topology":
        replicas = int(args[2]) if len(args) > 2 and args[1] == "--replicas" else 3
        write_topology(args[0], replicas)
        return
    market = market_of(args[0], args[1])
    if command == "wait-leader":
        print(trio.run(wait_leader, market))
    elif command == "followers":
        print(" ".join(trio.run(followers, market)))
    elif command == "post":
        trio.run(post, market, int(args[2]), args[3], args[4])
    elif command == "first-ack":
        trio.run(first_ack, market, args[2], float(args[3]))
    elif command == "check-orders":
        trio.run(check_orders, market, args[2:])
    elif command == "check-same":
        trio.run(check_same, market)
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Changing a group's membership under load, with real `clob node` processes and the admin CLI.

A spare joins (learner, then voter) while orders stream in, a follower is
removed and killed, and then the leader is killed: the remaining two voters
can elect a leader only because the spare really votes. Every acknowledged
order must survive, none applied twice, and the members must end in the
same state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from cli.processes import ProcessGroup, clob_command
from shard.node.api import NodeStatus, ShardError
from shard.node.client import ShardClient
from tests.node_cluster import write_topology

pytestmark = pytest.mark.processes

MARKET = "BTC-USD"


def _order(i: int) -> dict[str, Any]:
    """A resting buy that never trades, so every acknowledged one stays live."""
    return {
        "type": "new_order",
        "market": MARKET,
        "user": f"u{i % 5}",
        "client_order_id": f"o{i}",
        "side": "buy",
        "order_type": "limit",
        "price": f"{100 + i % 7}.00",
        "qty": "1.000",
    }


async def _admin_cli(config: Path, *args: str) -> str:
    with trio.fail_after(120):
        done = await trio.run_process(
            [*clob_command(), "admin", *args, "--config", str(config)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output
    return output


async def _statuses(client: ShardClient) -> dict[str, NodeStatus]:
    return {s.name: s for s in await client.status() if s.reachable}


async def _leader(client: ShardClient, not_this: str | None = None) -> str:
    with trio.fail_after(30):
        while True:
            for status in (await _statuses(client)).values():
                if status.role == "leader" and status.name != not_this:
                    return status.name
            await trio.sleep(0.05)


async def test_a_spare_joins_a_follower_leaves_and_the_new_voters_elect_under_load(
    tmp_path: Path,
) -> None:
    config, cluster = write_topology(tmp_path, replicas=3, spares=1)
    market = cluster.markets[0]
    names = [r.name for r in market.replicas]
    spare = names[-1]
    group = ProcessGroup()
    for name in names:
        argv = [*clob_command(), "node", "--config", str(config), "--node", name]
        group.add(name, argv, tmp_path / "logs" / f"{name}.log")
    acked: dict[str, int] = {}  # client order id -> order id
    try:
        await group.start_all()
        async with ShardClient(market, "load", retry_for=20.0) as client:
            stop = trio.Event()

            async def load(lane: int) -> None:
                i = lane
                while not stop.is_set():
                    try:
                        result = await client.submit(_order(i))
                    except ShardError:
                        await trio.sleep(0.05)  # unavailable or timed out: retried below
                        continue  # the same order again (its client order id refuses a double)
                    event = result.events[0]
                    if event["type"] == "accepted":
                        acked[event["client_order_id"]] = event["order_id"]
                    else:  # only a retry of an order applied after all may be refused
                        assert event["reason"] == "duplicate_client_order_id", event
                    i += 4

            async with trio.open_nursery() as nursery:
                for lane in range(4):
                    nursery.start_soon(load, lane)
                with trio.fail_after(60):
                    while len(acked) < 200:
                        await trio.sleep(0.05)
                joined = await _admin_cli(config, "add-replica", "--node", spare)
                assert "promoted to voter" in joined, joined
                leader = await _leader(client)
                gone = next(n for n in names[:-1] if n != leader)
                removed = await _admin_cli(config, "remove-replica", "--node", gone)
                assert f"{gone} removed" in removed
                await group.kill(gone)
                before = len(acked)
                with trio.fail_after(60):
                    while len(acked) < before + 100:
                        await trio.sleep(0.05)
                # voters now: the leader, the other original and the spare; kill the leader
                await group.kill(leader)
                new_leader = await _leader(client, not_this=leader)
                assert new_leader != gone
                before = len(acked)
                with trio.fail_after(60):
                    while len(acked) < before + 100:
                        await trio.sleep(0.05)
                stop.set()
            await group.start(leader)  # still a member: it catches up
            members = [n for n in names if n != gone]
            live: dict[str, int] = {}
            for user in range(5):
                reply = await client.query({"type": "orders", "user": f"u{user}"})
                for row in reply.events[0]["orders"]:
                    assert row["client_order_id"] not in live, "an order applied twice"
                    live[row["client_order_id"]] = row["order_id"]
            assert {cid: live.get(cid) for cid in acked} == acked  # nothing acknowledged lost
            with trio.fail_after(60):
                while True:
                    statuses = await _statuses(client)
                    applied = {
                        (statuses[n].applied_index, statuses[n].applied_seq)
                        for n in members
                        if n in statuses
                    }
                    if len(applied) == 1 and all(n in statuses for n in members):
                        break
                    await trio.sleep(0.1)
            assert statuses[spare].role in ("leader", "follower")
            digests = set()
            for name in members:
                snapshot = await _admin_cli(config, "snapshot", "--node", name)
                digests.add(snapshot.split("digest")[-1].strip())
            assert len(digests) == 1, digests  # the three members agree
    finally:
        await group.stop_all()

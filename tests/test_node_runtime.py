"""Replica groups of in-process trio nodes on 127.0.0.1: replication, failover, restart, digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio

from config.schema import ClusterConfig
from shard.node.api import Unavailable
from shard.node.client import ShardClient
from shard.node.options import ReplicaOptions
from shard.node.runtime import Replica
from shard.storage import StorageFull
from tests.node_cluster import write_topology

MARKET = "BTC-USD"


def order(i: int, side: str = "buy") -> dict[str, Any]:
    return {
        "type": "new_order",
        "market": MARKET,
        "user": f"u{i % 7}",
        "client_order_id": f"o{i}",
        "side": side,
        "order_type": "limit",
        "price": f"{100 + i % 5}.00",
        "qty": "1.000",
    }


class Group:
    """Replicas of one market, each in its own cancel scope so a test can stop one."""

    def __init__(self, cluster: ClusterConfig, nursery: trio.Nursery, options: ReplicaOptions):
        self.cluster = cluster
        self.nursery = nursery
        self.options = options
        self.replicas: dict[str, Replica] = {}
        self.scopes: dict[str, trio.CancelScope] = {}
        self.stopped: dict[str, trio.Event] = {}
        self.market = cluster.markets[0]

    async def start(self, name: str) -> Replica:
        replica = Replica(self.cluster, name, self.options)
        scope = trio.CancelScope()
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[Replica] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await replica.serve(task_status=task_status)
            finally:
                stopped.set()

        await self.nursery.start(run)
        self.replicas[name], self.scopes[name] = replica, scope
        self.stopped[name] = stopped
        return replica

    async def stop(self, name: str) -> None:
        self.scopes[name].cancel()
        with trio.fail_after(5):
            await self.stopped[name].wait()

    def leader(self) -> Replica | None:
        running = [r for n, r in self.replicas.items() if not self.scopes[n].cancel_called]
        leaders = [r for r in running if r.role == "leader"]
        return leaders[0] if len(leaders) == 1 else None


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def start_group(
    tmp_path: Path, nursery: trio.Nursery, options: ReplicaOptions | None = None, **topology: Any
) -> Group:
    _, cluster = write_topology(tmp_path, **topology)
    group = Group(cluster, nursery, options or ReplicaOptions())
    for replica in cluster.markets[0].replicas:
        if not replica.join:
            await group.start(replica.name)
    await wait_until(lambda: group.leader() is not None and group.leader().rsm.seq >= 1)  # type: ignore[union-attr]
    return group


def same_state(group: Group, names: list[str]) -> bool:
    seqs = {group.replicas[n].rsm.seq for n in names}
    indexes = {group.replicas[n].rsm.applied_index for n in names}
    return len(seqs) == 1 and len(indexes) == 1


async def test_group_replicates_and_digests_agree(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery)
        async with ShardClient(group.market, "t") as client:
            results = []
            async with trio.open_nursery() as inner:
                for i in range(60):

                    async def one(i: int = i) -> None:
                        results.append(await client.submit(order(i, "buy" if i % 2 else "sell")))

                    inner.start_soon(one)
            seqs = sorted(r.seq for r in results)
            assert seqs == list(range(2, 62))  # seq 1 is the bootstrap create_market
            assert all(r.events[0]["type"] == "accepted" for r in results)
            names = list(group.replicas)
            await wait_until(lambda: same_state(group, names))
            digests = {(await client.admin_on(n, "snapshot"))["digest"] for n in names}
            assert len(digests) == 1
            statuses = await client.status()
            assert {s.digest_seq for s in statuses} == {61}
            assert sum(s.role == "leader" for s in statuses) == 1
            book = await client.query({"type": "book", "market": MARKET})
            assert book.seq == 61 and book.events[0]["type"] == "book"
        nursery.cancel_scope.cancel()


async def test_subscribe_streams_every_seq_from_a_follower(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery)
        async with ShardClient(group.market, "t") as client:
            for i in range(5):
                await client.submit(order(i))
            seen = []
            async with client.subscribe(from_seq=1) as items:
                async for item in items:
                    seen.append(item)
                    if item.seq == 3:
                        leader = group.leader()
                        assert leader is not None and items.replica != leader.name
                    if item.seq == 8:
                        break
                    if item.seq == 6:
                        for i in range(5, 7):
                            await client.submit(order(i))
            assert [i.seq for i in seen] == list(range(1, 9))
            assert seen[0].events[0]["type"] == "market_created"
            assert seen[1].level_changes == [(MARKET, "buy", "100.00", "1.000")]
        nursery.cancel_scope.cancel()


async def test_leader_loss_keeps_acknowledged_commands(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery)
        async with ShardClient(group.market, "t") as client:
            acked = [await client.submit(order(i)) for i in range(10)]
            old = group.leader()
            assert old is not None
            await group.stop(old.name)
            await wait_until(lambda: group.leader() is not None)
            after = await client.submit(order(10))
            assert after.seq == acked[-1].seq + 1
            ids = set()
            for user in range(7):
                result = await client.query({"type": "orders", "user": f"u{user}"})
                ids |= {o["client_order_id"] for o in result.events[0]["orders"]}
            assert ids == {f"o{i}" for i in range(11)}
        nursery.cancel_scope.cancel()


async def test_restarted_follower_catches_up_through_snapshot(tmp_path: Path) -> None:
    options = ReplicaOptions(snapshot_every=4, retain_entries=0)
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery, options)
        leader = group.leader()
        assert leader is not None
        follower = next(n for n in group.replicas if n != leader.name)
        await group.stop(follower)
        async with ShardClient(group.market, "t") as client:
            for i in range(30):
                await client.submit(order(i))
            assert leader.last_snapshot_index >= 8
            restarted = await group.start(follower)
            names = list(group.replicas)
            await wait_until(lambda: same_state(group, names) and restarted.rsm.seq == 31)
            digests = {(await client.admin_on(n, "snapshot"))["digest"] for n in names}
            assert len(digests) == 1
        nursery.cancel_scope.cancel()


async def test_diverged_replica_stops_serving(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery)
        leader = group.leader()
        assert leader is not None
        name = next(n for n in group.replicas if n != leader.name)
        follower = group.replicas[name]
        async with ShardClient(group.market, "t") as client:
            mine = await client.admin_on(name, "snapshot")
            assert follower.status()["diverged"] is False
            fake = {"t": "digest", "index": mine["index"], "seq": mine["seq"], "digest": "00" * 16}
            follower._leader_digest(leader.name, fake)
            assert follower.diverged
            status = {s.name: s for s in await client.status()}
            assert status[name].diverged and not status[leader.name].diverged
            only = tuple(r for r in group.market.replicas if r.name == name)
            lone = ShardClient(attrs.evolve(group.market, replicas=only), "lone", retry_for=0.3)
            with pytest.raises(Unavailable, match="diverged"):
                await lone.query({"type": "book", "market": MARKET})
            await lone.aclose()
        nursery.cancel_scope.cancel()


async def test_spare_joins_as_learner_then_voter(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery, spares=1)
        spare = group.market.replicas[-1].name
        async with ShardClient(group.market, "t") as client:
            for i in range(5):
                await client.submit(order(i))
            joined = await group.start(spare)
            assert joined.status()["voters"] == []
            reply = await client.admin("add_replica", node=spare)
            assert reply["index"] > 0
            await wait_until(lambda: joined.rsm.seq == 6)
            leader = group.leader()
            assert leader is not None and spare in leader.status()["learners"]
            assert joined.status()["role"] == "learner"
            with trio.fail_after(10):
                while True:
                    try:
                        await client.admin("promote_replica", node=spare)
                        break
                    except Unavailable:
                        await trio.sleep(0.05)
            await wait_until(lambda: spare in joined.status()["voters"])
            assert len(leader.status()["voters"]) == 4
            await client.submit(order(6))
            names = list(group.replicas)
            await wait_until(lambda: same_state(group, names))
            assert joined.rsm.seq == 7
        nursery.cancel_scope.cancel()


async def test_full_disk_stops_acknowledgements(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery)
        leader = group.leader()
        assert leader is not None and leader.storage is not None
        async with ShardClient(group.market, "t", retry_for=10.0) as client:
            await client.submit(order(0))

            def disk_full() -> None:
                raise StorageFull("disk full while writing: [Errno 28] No space left on device")

            leader.storage.sync = disk_full  # type: ignore[method-assign]
            # The full replica stops; the two healthy ones elect a leader and go on.
            result = await client.submit(order(1))
            assert result.seq == 3 and client.leader != leader.name
            failure = leader.status()["failure"]
            assert failure is not None and "disk full" in failure
            assert leader.status()["role"] == "failed"
            only = tuple(r for r in group.market.replicas if r.name == leader.name)
            alone = ShardClient(attrs.evolve(group.market, replicas=only), "x", retry_for=0.3)
            with pytest.raises(Unavailable, match="disk full"):
                await alone.submit(order(2))
            await alone.aclose()
            assert leader.rsm.seq <= 3  # it acknowledged nothing after the failure
        nursery.cancel_scope.cancel()


def submits(client: str, first: int, count: int) -> list[dict[str, Any]]:
    """Raw submit requests of orders ``first``.. under session ``client``."""
    rows = range(first, first + count)
    return [
        {"t": "submit", "client": client, "req": i, "ack": 1, "cmd": orjson.dumps(order(i))}
        for i in rows
    ]


async def test_a_batch_of_submits_is_queued_or_refused_as_a_whole(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery, ReplicaOptions(max_queued_commands=4))
        leader = next(n for n, r in group.replicas.items() if r is group.leader())

        async with ShardClient(group.market, "t") as client:
            connection = client.connection(leader)
            # a session id the group never handed out is refused, and nothing is applied
            [stranger] = await connection.request_many_partial(submits("raw", 1, 1), True)
            assert stranger is not None and stranger["code"] == "session_expired"
            registered = await connection.request({"t": "register", "client": "raw"})
            session = registered["client"]
            assert registered["t"] == "registered" and session.startswith("raw@")

            # more than the queue holds: every one refused, none applied (not a prefix)
            refused = await connection.request_many_partial(submits(session, 1, 6), True)
            assert [r and r["code"] for r in refused] == ["unavailable"] * 6
            applied = await connection.request_many_partial(submits(session, 7, 3), True)
            assert [r and r["seq"] for r in applied] == [2, 3, 4]  # in order, after bootstrap
            # a malformed item spoils the whole batch
            bad = submits(session, 10, 2)
            bad[1]["req"] = "eleven"
            answers = await connection.request_many_partial(bad, True)
            assert [a and a["code"] for a in answers] == ["bad_request"] * 2
            assert group.replicas[leader].rsm.seq == 4
        nursery.cancel_scope.cancel()

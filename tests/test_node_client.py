"""ShardClient against ClientServers backed by fake replicas: redirects, retries, streams."""

from __future__ import annotations

import socket
from collections import deque
from typing import Any

import orjson
import pytest
import trio

from config.ports import free_ports
from config.schema import MarketConfig, ReplicaConfig
from shard.node import protocol
from shard.node.api import AppliedItem, BadRequest, SubscriptionGone, Unavailable
from shard.node.client import ShardClient
from shard.node.clientserver import ClientServer, Reply, Subscriber
from shard.node.framing import MAX_FRAME, FrameDecoder, encode_frame


def free_port() -> int:
    return free_ports(1)[0]


class Group:
    """A toy replicated log shared by the fakes: whoever is leader appends."""

    def __init__(self) -> None:
        self.leader = "r1"
        self.items: list[AppliedItem] = []
        self.sessions: dict[tuple[str, int], protocol.Message] = {}
        self.applications = 0
        self.registered: list[str] = []  # session ids handed out, in order
        self.forgotten: set[str] = set()  # sessions the group no longer knows
        self.pad = 0  # characters of padding in each event (a command's result can be huge)


class FakeReplica:
    def __init__(self, name: str, group: Group, keep: int = 1000) -> None:
        self.name = name
        self.group = group
        self.keep = keep
        self.subscribers: dict[int, tuple[Subscriber, int]] = {}
        self.withhold_replies = False
        self.held: list[Reply] = []  # replies to request 1, held back when withholding

    def _not_leader(self, reply: Reply) -> bool:
        if self.group.leader == self.name:
            return False
        reply(protocol.error(protocol.NOT_LEADER, "not leader", leader=self.group.leader))
        return True

    def register(self, label: str, reply: Reply) -> None:
        if self._not_leader(reply):
            return
        session = f"{label}@{len(self.group.registered) + 1}.0"
        self.group.registered.append(session)
        reply({"t": "registered", "client": session})

    def submit(self, client: str, req: int, ack: int, cmd: bytes, reply: Reply) -> None:
        if self._not_leader(reply):
            return
        if client not in self.group.registered or client in self.group.forgotten:
            reply(protocol.no_session(client))
            return
        key = (client, req)
        if key not in self.group.sessions:
            self.group.applications += 1
            seq = len(self.group.items) + 1
            events = [{"type": "echo", "seq": seq, "cmd": orjson.loads(cmd)}]
            if self.group.pad:
                events[0]["pad"] = "x" * self.group.pad
            self.group.items.append(AppliedItem(seq, events, [("M", "buy", "1", "2")]))
            self.group.sessions[key] = protocol.result(seq, events)
            for sub, _ in list(self.subscribers.values()):
                sub.push({"t": "applied", "items": [[seq, events, [["M", "buy", "1", "2"]]]]})
        if not self.withhold_replies:
            reply(dict(self.group.sessions[key]))
        elif req == 1 and self.held is not None:
            self.held.append(reply)

    def submit_batch(self, items: list[tuple[str, int, int, bytes, Reply]]) -> None:
        # one by one through ``submit`` (which tests may script to refuse some)
        for client, req, ack, cmd, reply in items:
            self.submit(client, req, ack, cmd, reply)

    def query(self, cmd: bytes, reply: Reply) -> None:
        if not self._not_leader(reply):
            reply(protocol.result(len(self.group.items), [{"type": "q"}]))

    def subscribe(self, from_seq: int, subscriber: Subscriber, reply: Reply) -> None:
        oldest = max(1, len(self.group.items) - self.keep + 1)
        if from_seq < oldest:
            reply(protocol.error(protocol.GONE, f"oldest kept is {oldest}"))
            return
        self.subscribers[id(subscriber)] = (subscriber, from_seq)
        backlog = [
            [i.seq, i.events, list(i.level_changes)] for i in self.group.items[from_seq - 1 :]
        ]
        if backlog:  # pushed before the ok on purpose: the client must cope
            subscriber.push({"t": "applied", "items": backlog})
        reply({"t": "ok"})

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.pop(id(subscriber), None)

    def status(self) -> protocol.Message:
        return {
            "t": "status",
            "role": "leader" if self.group.leader == self.name else "follower",
            "term": 1,
            "leader": self.group.leader,
            "applied_seq": len(self.group.items),
        }

    async def admin(self, request: protocol.Message) -> protocol.Message:
        return {"t": "ok", "done": request["action"]}


async def start_group(
    nursery: trio.Nursery, names: list[str], keep: int = 1000
) -> tuple[Group, dict[str, FakeReplica], dict[str, trio.CancelScope], MarketConfig]:
    group = Group()
    fakes: dict[str, FakeReplica] = {}
    scopes: dict[str, trio.CancelScope] = {}
    replicas = []
    for name in names:
        fake = FakeReplica(name, group, keep)
        server = ClientServer(fake, f"127.0.0.1:{free_port()}")
        scope = trio.CancelScope()

        async def run(
            server: ClientServer = server,
            scope: trio.CancelScope = scope,
            task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            with scope:
                await server.serve(task_status=task_status)

        await nursery.start(run)
        fakes[name], scopes[name] = fake, scope
        replicas.append(ReplicaConfig(name, "127.0.0.1:1", server.listen, f"d/{name}"))
    return group, fakes, scopes, MarketConfig("M", "1", "1", tuple(replicas))


async def test_submit_follows_redirect_and_is_applied_once() -> None:
    async with trio.open_nursery() as nursery:
        group, _, _, market = await start_group(nursery, ["r1", "r2", "r3"])
        group.leader = "r3"
        async with ShardClient(market, "c1") as client:
            client.leader = "r1"
            results = []
            async with trio.open_nursery() as inner:
                for i in range(130):

                    async def one(i: int = i) -> None:
                        results.append(await client.submit({"n": i}))

                    inner.start_soon(one)
            assert client.leader == "r3"
            assert sorted(r.seq for r in results) == list(range(1, 131))
            assert group.applications == 130
            assert client._ack_below() == 128  # all of 1..130 answered; rounded down to 64s
            query = await client.query({"type": "book"})
            assert query.seq == 130
        nursery.cancel_scope.cancel()


async def test_client_registers_once_and_again_after_its_session_is_forgotten() -> None:
    async with trio.open_nursery() as nursery:
        group, _, _, market = await start_group(nursery, ["r1", "r2"])
        async with ShardClient(market, "gw-1") as client:
            async with trio.open_nursery() as inner:
                for i in range(20):
                    inner.start_soon(client.submit, {"n": i})
            assert group.registered == ["gw-1@1.0"] and client.session == "gw-1@1.0"
            group.forgotten.add("gw-1@1.0")  # evicted by the group
            # sent once and refused for its session: not applied, so `unavailable`
            with pytest.raises(Unavailable, match="not applied"):
                await client.submit({"n": "refused"})
            assert client.session is None and group.applications == 20
            again = await client.submit({"n": "after"})
            assert group.registered == ["gw-1@1.0", "gw-1@2.0"] and again.seq == 21
        nursery.cancel_scope.cancel()


async def test_retry_after_lost_reply_keeps_idempotency() -> None:
    async with trio.open_nursery() as nursery:
        group, fakes, scopes, market = await start_group(nursery, ["r1", "r2"])
        async with ShardClient(market, "c1", retry_for=3.0) as client:
            fakes["r1"].withhold_replies = True

            async def fail_over() -> None:
                while group.applications == 0:
                    await trio.sleep(0.001)
                group.leader = "r2"
                scopes["r1"].cancel()  # the leader dies without answering

            nursery.start_soon(fail_over)
            result = await client.submit({"n": 1})
            assert result.seq == 1
            assert group.applications == 1  # the retry found the remembered result
            assert client.leader == "r2"
        nursery.cancel_scope.cancel()


async def test_unavailable_after_retry_budget() -> None:
    market = MarketConfig(
        "M", "1", "1", (ReplicaConfig("r1", "127.0.0.1:1", f"127.0.0.1:{free_port()}", "d"),)
    )
    async with ShardClient(market, "c1", retry_for=0.2) as client:
        with pytest.raises(Unavailable):
            await client.submit({"n": 1})
        statuses = await client.status()
        assert [(s.name, s.reachable) for s in statuses] == [("r1", False)]


async def test_status_marks_unreachable() -> None:
    async with trio.open_nursery() as nursery:
        _, _, scopes, market = await start_group(nursery, ["r1", "r2", "r3"])
        scopes["r2"].cancel()
        async with ShardClient(market) as client:
            with trio.fail_after(5):
                while True:
                    statuses = await client.status()
                    if not statuses[1].reachable:
                        break
            assert [s.reachable for s in statuses] == [True, False, True]
            assert statuses[0].role == "leader" and statuses[2].leader == "r1"
        nursery.cancel_scope.cancel()


async def test_subscribe_resumes_on_another_replica_and_reports_gone() -> None:
    async with trio.open_nursery() as nursery:
        group, _, scopes, market = await start_group(nursery, ["r1", "r2", "r3"], keep=5)
        async with ShardClient(market, "c1") as client:
            for i in range(3):
                await client.submit({"n": i})
            seen: list[int] = []
            async with client.subscribe(from_seq=2) as items:
                assert items.replicas[-1][0] == "r1"  # the leader is the last choice
                async for item in items:
                    seen.append(item.seq)
                    if item.seq == 3:
                        assert items.replica is not None
                        scopes[items.replica].cancel()
                        if items.replica == "r1":
                            group.leader = "r2"
                        await client.submit({"n": 3})
                    if item.seq == 4:
                        break
            assert seen == [2, 3, 4]
            for i in range(10):
                await client.submit({"n": i})
            with pytest.raises(SubscriptionGone):
                async with client.subscribe(from_seq=1) as items:
                    await items.__anext__()
        nursery.cancel_scope.cancel()


async def test_bad_frames_and_requests() -> None:
    async with trio.open_nursery() as nursery:
        _, _, _, market = await start_group(nursery, ["r1"])
        host, port = market.replicas[0].client.split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(encode_frame({"t": "submit", "rid": 7, "client": 1}))
        await stream.send_all(encode_frame(["not a map"]))
        # request number 0 is a registration's, never a submit's; labels are bounded
        zero = {"t": "submit", "rid": 8, "client": "c", "req": 0, "ack": 0, "cmd": b"{}"}
        await stream.send_all(encode_frame(zero))
        await stream.send_all(encode_frame({"t": "register", "rid": 9, "client": "x" * 65}))
        decoder = FrameDecoder()
        replies: deque[Any] = deque()
        with trio.fail_after(5):
            while len(replies) < 4:
                decoder.feed(await stream.receive_some(1024))
                replies.extend(decoder.messages())
        assert replies[0]["rid"] == 7 and replies[0]["code"] == "bad_request"
        assert replies[1]["code"] == "bad_request"
        assert [(r["rid"], r["code"]) for r in list(replies)[2:]] == [
            (8, "bad_request"),
            (9, "bad_request"),
        ]
        await stream.send_all(b"\xff\xff\xff\xff")  # absurd frame length: closed
        with trio.fail_after(5):
            assert await stream.receive_some(1024) == b""
        await stream.aclose()
        async with ShardClient(market) as client:  # the server itself is fine
            assert (await client.submit({"n": 1})).seq == 1
            with pytest.raises(BadRequest):
                await client.admin("explode")
            assert (await client.admin("snapshot"))["done"] == "snapshot"
        nursery.cancel_scope.cancel()


async def test_window_of_unanswered_requests_is_bounded() -> None:
    async with trio.open_nursery() as nursery:
        group, fakes, _, market = await start_group(nursery, ["r1"])
        async with ShardClient(market, "c1") as client:
            fakes["r1"].withhold_replies = True
            nursery.start_soon(client.submit, {"n": 0})  # request 1: its reply is held
            while not fakes["r1"].held:
                await trio.sleep(0.001)
            fakes["r1"].withhold_replies = False
            async with trio.open_nursery() as inner:
                for i in range(1, 1000):
                    inner.start_soon(client.submit, {"n": i})
                with trio.fail_after(5):
                    while group.applications < 900:
                        await trio.sleep(0.001)
                await trio.sleep(0.05)  # give a wrongly unbounded client time to go on
                assert group.applications == 900  # requests 1..900 only: the window is full
                fakes["r1"].held.pop()(dict(group.sessions[(group.registered[0], 1)]))
            assert group.applications == 1000
        nursery.cancel_scope.cancel()


class _BrokenStream:
    """A socket stream whose peer is gone: every write fails as trio reports it."""

    def __init__(self) -> None:
        self.socket = socket.socket()

    async def send_all(self, data: bytes) -> None:
        raise trio.BrokenResourceError("peer reset the connection")


async def test_a_write_to_a_vanished_replica_is_reported_as_connection_lost() -> None:
    """A replica killed between requests surfaces as ConnectionLost (retried
    elsewhere by ShardClient), never as a raw trio.BrokenResourceError that
    callers would report as an internal error."""
    from shard.node.connection import ConnectionLost, ReplicaConnection

    connection = ReplicaConnection("r1", "127.0.0.1:9")
    connection._stream = _BrokenStream()  # type: ignore[assignment]
    with pytest.raises(ConnectionLost):
        await connection.request({"t": "status"})
    assert isinstance(connection.failure, ConnectionLost)


async def test_submit_many_returns_each_result_in_order_once() -> None:
    """Batches and lone submits share one connection; every reply reaches its caller."""
    async with trio.open_nursery() as nursery:
        group, _, _, market = await start_group(nursery, ["r1", "r2"])
        async with ShardClient(market, "c1") as client:
            batches: dict[int, list[Any]] = {}
            singles: list[Any] = []

            async def batch(b: int) -> None:
                results = await client.submit_many([{"b": b, "i": i} for i in range(50)])
                batches[b] = [r.events[0]["cmd"] for r in results]

            async def single(i: int) -> None:
                singles.append((await client.submit({"s": i})).events[0]["cmd"])

            async with trio.open_nursery() as inner:
                for b in range(6):
                    inner.start_soon(batch, b)
                    inner.start_soon(single, b)
            assert batches == {b: [{"b": b, "i": i} for i in range(50)] for b in range(6)}
            assert sorted(s["s"] for s in singles) == list(range(6))
            assert group.applications == 306
            assert await client.submit_many([]) == []
            with pytest.raises(ValueError, match="at most"):
                await client.submit_many([{}] * 1000)
        nursery.cancel_scope.cancel()


async def test_submit_many_retries_the_unanswered_after_redirect_and_loss() -> None:
    async with trio.open_nursery() as nursery:
        group, fakes, scopes, market = await start_group(nursery, ["r1", "r2", "r3"])
        async with ShardClient(market, "c1", retry_for=3.0) as client:
            group.leader = "r3"
            client.leader = "r1"  # stale: the whole first attempt is refused
            results = await client.submit_many([{"n": i} for i in range(20)])
            assert [r.events[0]["cmd"]["n"] for r in results] == list(range(20))
            assert client.leader == "r3" and group.applications == 20

            fakes["r3"].withhold_replies = True  # applies, but request 21's reply never comes

            async def fail_over() -> None:
                while group.applications < 25:
                    await trio.sleep(0.001)
                group.leader = "r2"
                scopes["r3"].cancel()  # the leader dies with replies outstanding

            nursery.start_soon(fail_over)
            again = await client.submit_many([{"n": i} for i in range(20, 25)])
            assert [r.seq for r in again] == [21, 22, 23, 24, 25]  # remembered, not re-applied
            assert group.applications == 25 and client.leader == "r2"
        nursery.cancel_scope.cancel()


async def test_a_result_larger_than_a_request_frame_reaches_the_client_and_its_streams() -> None:
    """A taker that sweeps a few hundred thousand resting orders has a result of more than
    64 MiB (one fill each). Requests to a replica stay bounded by MAX_FRAME, but what the
    replicas send their clients must get through: a client refusing it would retry the
    same remembered result for ever, and every stream would stall at that seq."""
    async with trio.open_nursery() as nursery:
        group, _, _, market = await start_group(nursery, ["r1", "r2"])
        group.pad = MAX_FRAME + 1024
        async with ShardClient(market, "c1", retry_for=3.0) as client:
            with trio.fail_after(30):
                result = await client.submit({"n": "sweep"})
            assert len(result.events[0]["pad"]) == group.pad
            group.pad = 0
            with trio.fail_after(30):
                async with client.subscribe(from_seq=1) as items:
                    item = await items.__anext__()
            assert item.seq == 1 and len(item.events[0]["pad"]) == MAX_FRAME + 1024
        nursery.cancel_scope.cancel()

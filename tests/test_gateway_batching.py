"""Group commit per lane: queued commands go to the market as one ordered batch.

The lane half runs on a scripted backend; the ``ShardClient.submit_ordered``
half on fake replicas behind real ClientServers (refusals mid-batch, a leader
lost with the batch in flight).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from gateway.lanes import Job, Lanes
from gateway.routing import Market
from shard.node import protocol
from shard.node.api import CommandResult, ShardError, Unavailable
from shard.node.client import ShardClient
from shard.node.clientserver import Reply
from shard.observability import get_logger
from tests.test_node_client import FakeReplica, Group, start_group

# -- lanes -----------------------------------------------------------------------------------


class _ScriptedBackend:
    """Applies commands in call order; holds each call until ``gate`` is set.

    ``fail`` maps a command's ``n`` to the error reported for it (not applied).
    """

    def __init__(self, fail: dict[int, ShardError] | None = None) -> None:
        self.calls: list[tuple[str, list[int]]] = []  # ("one"|"batch"|"query", ns)
        self.applied: list[int] = []
        self.fail = fail or {}
        self.gate = trio.Event()

    def _apply(self, n: int) -> CommandResult | ShardError:
        failure = self.fail.get(n)
        if failure is not None:
            return failure
        self.applied.append(n)
        return CommandResult(len(self.applied), [{"n": n}])

    async def submit(self, command: dict[str, Any]) -> CommandResult:
        self.calls.append(("one", [command["n"]]))
        await self.gate.wait()
        outcome = self._apply(command["n"])
        if isinstance(outcome, ShardError):
            raise outcome
        return outcome

    async def submit_ordered(
        self,
        commands: list[dict[str, Any]],
        report: Callable[[int, CommandResult | ShardError], None],
    ) -> None:
        self.calls.append(("batch", [c["n"] for c in commands]))
        await self.gate.wait()
        for i, command in enumerate(commands):
            report(i, self._apply(command["n"]))

    async def query(self, command: dict[str, Any]) -> CommandResult:
        self.calls.append(("query", [command["n"]]))
        await self.gate.wait()
        return CommandResult(len(self.applied), [{"applied": list(self.applied)}])


def _job(n: int, replies: list[dict[str, Any]], *, command: bool = True) -> Job:
    return Job(
        request_id=n,
        op="new_order" if command else "book",
        is_command=command,
        user="alice",
        commands={"btc-usd": {"n": n}},
        fanout=False,
        reply=lambda text: replies.append(orjson.loads(text)),
        started=trio.current_time(),
    )


async def _run_lane(
    backend: _ScriptedBackend, jobs: list[Job], replies: list[dict[str, Any]], timeout: float = 5.0
) -> None:
    """Queue ``jobs`` behind a first one that holds the lane, then let the backend go."""
    market = Market("btc-usd", "0.01", "1", backend)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        lanes = Lanes(nursery, 100, timeout, get_logger("test.batching"), batch=4)
        lanes.submit(jobs[0], [market])
        await trio.testing.wait_all_tasks_blocked()  # the first job runs alone
        for job in jobs[1:]:
            lanes.submit(job, [market])
        backend.gate.set()
        with trio.fail_after(5):
            while len(replies) < len(jobs):
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()


async def test_queued_commands_go_as_ordered_batches_and_queries_split_them() -> None:
    backend = _ScriptedBackend()
    replies: list[dict[str, Any]] = []
    kinds = [True, True, True, True, True, True, True, False, True, True]  # n = 1..10
    jobs = [_job(n, replies, command=c) for n, c in enumerate(kinds, start=1)]
    await _run_lane(backend, jobs, replies)
    assert backend.calls == [
        ("one", [1]),
        ("batch", [2, 3, 4, 5]),  # at most ``batch`` (4) at a time
        ("batch", [6, 7]),
        ("query", [8]),  # a query ends the batch before it ...
        ("batch", [9, 10]),  # ... and sees every command before it, none after
    ]
    assert backend.applied == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert [r["id"] for r in replies] == list(range(1, 11))  # replies in request order
    seqs = [r["result"]["seq"] for r in replies if r["id"] != 8]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert next(r for r in replies if r["id"] == 8)["result"] == {"applied": [1, 2, 3, 4, 5, 6, 7]}


async def test_a_pipelining_lane_gathers_requests_arriving_one_per_pass() -> None:
    backend = _ScriptedBackend()
    backend.gate.set()
    replies: list[dict[str, Any]] = []
    market = Market("btc-usd", "0.01", "1", backend)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        lanes = Lanes(nursery, 100, 5.0, get_logger("test.batching"), batch=8)
        for n in (1, 2):  # both wait before the lane first runs: it has seen pipelining
            lanes.submit(_job(n, replies), [market])
        with trio.fail_after(5):
            while len(replies) < 2:
                await trio.sleep(0.001)
        for n in range(3, 7):  # as a WebSocket reader hands them over: one per pass
            lanes.submit(_job(n, replies), [market])
            await trio.lowlevel.checkpoint()
        with trio.fail_after(5):
            while len(replies) < 6:
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert backend.calls == [("batch", [1, 2]), ("batch", [3, 4, 5, 6])]
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5, 6]


async def test_a_batch_reports_each_request_its_own_outcome() -> None:
    fail: dict[int, ShardError] = {3: Unavailable("refused"), 4: Unavailable("refused")}
    backend = _ScriptedBackend(fail)
    replies: list[dict[str, Any]] = []
    jobs = [_job(n, replies) for n in range(1, 6)]
    await _run_lane(backend, jobs, replies)
    assert backend.calls == [("one", [1]), ("batch", [2, 3, 4, 5])]
    by_id = {r["id"]: r for r in replies}
    assert [by_id[n]["ok"] for n in range(1, 6)] == [True, True, False, False, True]
    for n in (3, 4):
        assert by_id[n]["error"]["code"] == "unavailable"
    assert backend.applied == [1, 2, 5]


async def test_a_batch_past_the_time_bound_answers_the_rest_indeterminate() -> None:
    class _Stalls(_ScriptedBackend):
        async def submit_ordered(
            self,
            commands: list[dict[str, Any]],
            report: Callable[[int, CommandResult | ShardError], None],
        ) -> None:
            self.calls.append(("batch", [c["n"] for c in commands]))
            report(0, self._apply(commands[0]["n"]))  # the first is known at once
            await trio.sleep_forever()  # the rest never answer

    backend = _Stalls()
    replies: list[dict[str, Any]] = []
    jobs = [_job(n, replies) for n in range(1, 5)]
    await _run_lane(backend, jobs, replies, timeout=0.2)
    by_id = {r["id"]: r for r in replies}
    assert by_id[1]["ok"] and by_id[2]["ok"]
    for n in (3, 4):
        assert by_id[n]["error"]["code"] == "timeout"
        assert by_id[n]["error"]["indeterminate"] is True


async def test_a_batch_answered_out_of_order_is_logged_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class _Backwards(_ScriptedBackend):
        async def submit_ordered(
            self,
            commands: list[dict[str, Any]],
            report: Callable[[int, CommandResult | ShardError], None],
        ) -> None:
            for i, command in enumerate(commands):  # a broken backend: seqs run backwards
                report(i, CommandResult(100 - i, [{"n": command["n"]}]))

    backend = _Backwards()
    backend.gate.set()
    replies: list[dict[str, Any]] = []
    with caplog.at_level(logging.ERROR, logger="test.batching"):
        await _run_lane(backend, [_job(n, replies) for n in range(1, 4)], replies)
    assert [r["id"] for r in replies] == [1, 2, 3]
    assert [r.getMessage() for r in caplog.records].count("batch applied out of order") == 1


# -- ShardClient.submit_ordered against fake replicas -------------------------------------------


class _ScriptedReplica(FakeReplica):
    """A fake replica that can refuse given commands once, or take commands in silence."""

    def __init__(self, name: str, group: Group) -> None:
        super().__init__(name, group)
        self.refuse: set[int] = set()  # command ns refused (once) with ``unavailable``
        self.silent_from: int | None = None  # apply ns below it but answer none; drop the rest
        self.arrivals: list[int] = []

    def submit(self, client: str, req: int, ack: int, cmd: bytes, reply: Reply) -> None:
        n = orjson.loads(cmd)["n"]
        self.arrivals.append(n)
        if n in self.refuse:
            self.refuse.discard(n)
            reply(protocol.error(protocol.UNAVAILABLE, "leader overloaded"))
            return
        if self.silent_from is not None:
            if n < self.silent_from:
                super().submit(client, req, ack, cmd, lambda message: None)
            return
        super().submit(client, req, ack, cmd, reply)


async def _group(
    nursery: trio.Nursery,
) -> tuple[Group, dict[str, _ScriptedReplica], dict[str, trio.CancelScope], Any]:
    group, fakes, scopes, market = await start_group(nursery, ["r1", "r2", "r3"])
    scripted = {}
    for name, fake in fakes.items():  # the servers call ``fake.submit``: swap in the scripted one
        replica = _ScriptedReplica(name, group)
        fake.submit = replica.submit  # type: ignore[method-assign]
        scripted[name] = replica
    return group, scripted, scopes, market


def _applied(group: Group) -> list[int]:
    return [item.events[0]["cmd"]["n"] for item in group.items]


async def _submit_ordered(client: ShardClient, ns: list[int]) -> list[CommandResult | ShardError]:
    outcomes: list[CommandResult | ShardError] = []

    def report(i: int, outcome: CommandResult | ShardError) -> None:
        assert i == len(outcomes)  # in order, each once
        outcomes.append(outcome)

    await client.submit_ordered([{"n": n} for n in ns], report)
    return outcomes


async def test_refused_mid_batch_before_an_applied_one_is_not_retried() -> None:
    async with trio.open_nursery() as nursery:
        group, fakes, _, market = await _group(nursery)
        fakes["r1"].refuse = {2}
        async with ShardClient(market, "c1", retry_for=2.0) as client:
            outcomes = await _submit_ordered(client, [1, 2, 3, 4])
        nursery.cancel_scope.cancel()
    assert isinstance(outcomes[1], Unavailable)  # never applied, and never will be
    assert all(isinstance(outcomes[i], CommandResult) for i in (0, 2, 3))
    assert _applied(group) == [1, 3, 4]
    assert fakes["r1"].arrivals == [1, 2, 3, 4]  # 2 was not sent again


async def test_refused_at_the_tail_of_a_batch_is_retried_in_order() -> None:
    async with trio.open_nursery() as nursery:
        group, fakes, _, market = await _group(nursery)
        fakes["r1"].refuse = {3, 4}
        async with ShardClient(market, "c1", retry_for=2.0) as client:
            outcomes = await _submit_ordered(client, [1, 2, 3, 4])
        nursery.cancel_scope.cancel()
    assert all(isinstance(o, CommandResult) for o in outcomes)
    assert _applied(group) == [1, 2, 3, 4]
    seqs = [o.seq for o in outcomes if isinstance(o, CommandResult)]
    assert seqs == [1, 2, 3, 4]


async def test_leader_lost_mid_batch_loses_nothing_and_applies_nothing_twice() -> None:
    async with trio.open_nursery() as nursery:
        group, fakes, scopes, market = await _group(nursery)
        fakes["r1"].silent_from = 3  # r1 applies 1 and 2 without answering, then dies
        async with ShardClient(market, "c1", retry_for=3.0) as client:
            outcomes: list[CommandResult | ShardError] = []

            async def run() -> None:
                outcomes.extend(await _submit_ordered(client, [1, 2, 3, 4, 5]))

            async with trio.open_nursery() as inner:
                inner.start_soon(run)
                with trio.fail_after(5):
                    while len(fakes["r1"].arrivals) < 5:
                        await trio.sleep(0.001)
                group.leader = "r2"
                scopes["r1"].cancel()  # the connection breaks with every reply missing
        nursery.cancel_scope.cancel()
    assert all(isinstance(o, CommandResult) for o in outcomes), outcomes
    assert _applied(group) == [1, 2, 3, 4, 5]
    assert group.applications == 5  # 1 and 2 were retried, and deduplicated
    seqs = [o.seq for o in outcomes if isinstance(o, CommandResult)]
    assert seqs == [1, 2, 3, 4, 5]

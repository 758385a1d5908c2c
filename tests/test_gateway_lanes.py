"""Lanes: per-market order on one connection, the queue bound, and fan-out replies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import trio
import trio.testing

from gateway.errors import GatewayError
from gateway.lanes import Job, Lanes
from gateway.routing import Market
from shard.node.api import CommandResult, ShardError
from shard.observability import get_logger


class _GatedBackend:
    """Records submits in arrival order and holds each until ``gate`` is set."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.gate = trio.Event()

    async def submit(self, command: dict[str, Any]) -> CommandResult:
        self.seen.append(command["n"])
        await self.gate.wait()
        return CommandResult(command["n"], [{"n": command["n"]}])

    async def submit_ordered(
        self,
        commands: list[dict[str, Any]],
        report: Callable[[int, CommandResult | ShardError], None],
    ) -> None:
        self.seen.extend(c["n"] for c in commands)
        await self.gate.wait()
        for i, c in enumerate(commands):
            report(i, CommandResult(c["n"], [{"n": c["n"]}]))


def _market(name: str, backend: _GatedBackend) -> Market:
    return Market(name, "0.01", "1", backend)  # type: ignore[arg-type]


def _job(n: int, markets: list[str], replies: list[dict[str, Any]]) -> Job:
    return Job(
        request_id=n,
        op="new_order",
        is_command=True,
        user="alice",
        commands={m: {"n": n} for m in markets},
        fanout=len(markets) > 1,
        reply=lambda text: replies.append(orjson.loads(text)),
        started=trio.current_time(),
    )


async def test_one_lane_keeps_order_and_bounds_its_queue() -> None:
    backend = _GatedBackend()
    market = _market("btc-usd", backend)
    replies: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        lanes = Lanes(nursery, 2, 5.0, get_logger("test.lanes"))
        lanes.submit(_job(1, ["btc-usd"], replies), [market])
        await trio.testing.wait_all_tasks_blocked()  # job 1 runs; the queue holds 2 more
        for n in (2, 3):
            lanes.submit(_job(n, ["btc-usd"], replies), [market])
        try:
            lanes.submit(_job(4, ["btc-usd"], replies), [market])
        except GatewayError as exc:
            assert exc.code == "rate_limited"
        else:
            raise AssertionError("a full lane accepted a job")
        await trio.testing.wait_all_tasks_blocked()
        assert backend.seen == [1]  # one at a time
        backend.gate.set()
        with trio.fail_after(5):
            while len(replies) < 3:
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert backend.seen == [1, 2, 3]
    assert [r["id"] for r in replies] == [1, 2, 3]
    assert all(r["ok"] for r in replies)


async def test_fanout_job_is_answered_once_after_every_market() -> None:
    first, second = _GatedBackend(), _GatedBackend()
    markets = [_market("btc-usd", first), _market("eth-usd", second)]
    replies: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        lanes = Lanes(nursery, 4, 5.0, get_logger("test.lanes"))
        lanes.submit(_job(1, ["btc-usd", "eth-usd"], replies), markets)
        first.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert replies == []  # eth-usd has not answered yet
        second.gate.set()
        with trio.fail_after(5):
            while not replies:
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert len(replies) == 1 and replies[0]["ok"] and replies[0]["id"] == 1

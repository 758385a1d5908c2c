"""Running a connection's market requests in order: one lane per (connection, market).

PROTOCOL.md: requests to the same market from one connection are applied in
the order sent; different markets may proceed concurrently. So each
connection has, per market it uses, a bounded queue and one task that runs
that market's requests one after another. A request without a market
(``cancel_all``, ``orders``, ``fills``) becomes one part per market, queued
on every lane at once, and is answered when its last part is done; so it is
ordered with respect to the connection's earlier and later requests in each
market.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from gateway import metrics
from gateway.errors import GatewayError, from_backend, timed_out
from gateway.privacy import redact
from gateway.routing import Market, fills_reply, merge_command, merge_fills, merge_orders
from gateway.wire import Fills, RequestId, reply_error, reply_ok
from shard.node.api import CommandResult, ShardError
from shard.observability import StructuredLogger

# Commands one lane sends as one ordered batch at most (ShardClient allows 225).
MAX_BATCH = 64


@attrs.define(eq=False)
class Job:
    """One client request spread over ``len(commands)`` market parts (in market-name order)."""

    request_id: RequestId
    op: str
    is_command: bool
    user: str | None
    commands: dict[str, dict[str, Any]]  # market -> engine command or query
    fanout: bool
    reply: Callable[[str], object]
    started: float
    fills_limit: int | None = None
    results: dict[str, CommandResult] = attrs.field(factory=dict)
    errors: dict[str, GatewayError] = attrs.field(factory=dict)

    async def run_part(self, market: Market, timeout: float, log: StructuredLogger) -> None:
        """Run this job's part for ``market``; the last part to finish sends the reply."""
        command = self.commands[market.name]
        call = market.backend.submit if self.is_command else market.backend.query
        result: CommandResult | None = None
        error: GatewayError | None = None
        with trio.move_on_after(timeout) as scope:
            try:
                result = await call(command)
            except Exception as exc:
                error = _backend_error(exc, market.name, self.op, self.is_command, log)
        if scope.cancelled_caught:
            error = timed_out(is_command=self.is_command)
        self.settle(market.name, result, error, log)

    def settle(
        self,
        market: str,
        result: CommandResult | None,
        error: GatewayError | None,
        log: StructuredLogger,
    ) -> None:
        """Record the part for ``market`` (a result or an error); the last one replies."""
        if error is not None:
            self.errors[market] = error
        else:
            assert result is not None
            self.results[market] = result
        if len(self.results) + len(self.errors) == len(self.commands):
            self._finish(log)

    def _finish(self, log: StructuredLogger) -> None:
        error = self.errors[min(self.errors)] if self.errors else None
        if error is None:
            try:
                self.reply(reply_ok(self.request_id, self._result()))
            except Exception as exc:  # a malformed backend result: a bug, never the client's
                log.error("cannot build a reply", op=self.op, exc_info=exc)
                error = GatewayError("internal", "Internal error.")
        if error is not None:
            self.reply(reply_error(self.request_id, error))
        code: str = "ok" if error is None else error.code
        metrics.answered(self.op, code, trio.current_time() - self.started)

    def _result(self) -> dict[str, Any]:
        parts = [(m, self.results[m]) for m in sorted(self.results)]
        if self.is_command:
            if self.fanout:
                merged = merge_command(parts)
            else:
                merged = {"seq": parts[0][1].seq, "events": parts[0][1].events}
            merged["events"] = [redact(e, self.user) for e in merged["events"]]
            return merged
        if self.fanout and self.op == "orders":
            return merge_orders(parts, self.user or "")
        if self.fanout and self.op == "fills":
            return merge_fills(parts, self.user or "", self.fills_limit)
        result = parts[0][1]
        if not result.events:
            raise AssertionError(f"a query returned no event: {result!r}")
        return fills_reply(result.events[0]) if self.op == "fills" else dict(result.events[0])


class _Lane:
    """One market's queue on one connection and whether its task waits for work.

    A deque and an event instead of a memory channel: the channel's
    ``statistics()`` (a fresh object per call) and its send/receive machinery
    were a measurable share of the gateway's time per request.
    """

    __slots__ = ("queue", "wake")

    def __init__(self) -> None:
        self.queue: deque[Job] = deque()
        self.wake: trio.Event | None = None  # set while the lane's task waits for a job

    def buffered(self) -> int:
        """Jobs waiting behind the running one (a job an idle task is about to take is not)."""
        queued = len(self.queue)
        return queued - 1 if queued and self.wake is not None else queued


class Lanes:
    """A connection's lanes, created on first use; their tasks live in ``nursery``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        capacity: int,
        timeout: float,
        log: StructuredLogger,
        *,
        batch: int = MAX_BATCH,
    ) -> None:
        self._nursery = nursery
        self._batch = batch
        self._capacity = capacity
        self._timeout = timeout
        self._log = log
        self._lanes: dict[str, _Lane] = {}

    def _lane(self, market: Market) -> _Lane:
        lane = self._lanes.get(market.name)
        if lane is None:
            self._lanes[market.name] = lane = _Lane()
            self._nursery.start_soon(self._run, market, lane)
        return lane

    def submit(self, job: Job, markets: list[Market]) -> None:
        """Queue ``job`` on each market's lane; raises ``rate_limited`` if any lane is full."""
        lanes = [self._lane(m) for m in markets]
        capacity = self._capacity
        for lane in lanes:
            if lane.buffered() >= capacity:
                raise GatewayError(
                    "rate_limited",
                    "Too many requests in flight for this market on this connection.",
                )
        for lane in lanes:
            lane.queue.append(job)
            if lane.wake is not None:
                lane.wake.set()

    async def _run(self, market: Market, lane: _Lane) -> None:
        queue = lane.queue
        most = self._batch
        pipelined = False  # this lane has had requests waiting behind the one it took
        while True:
            while not queue:
                lane.wake = trio.Event()
                await lane.wake.wait()
            lane.wake = None
            if pipelined:
                await _gather(queue, most)
            job = queue.popleft()
            pipelined = pipelined or bool(queue)
            if job.is_command and queue and queue[0].is_command and most > 1:
                batch = [job]
                while queue and queue[0].is_command and len(batch) < most:
                    batch.append(queue.popleft())
                await run_batch(batch, market, self._timeout, self._log)
            else:
                await job.run_part(market, self._timeout, self._log)


async def _gather(queue: deque[Job], most: int) -> None:
    """Yield while requests already read from the socket keep joining ``queue``.

    Only for a lane whose client keeps several requests in flight: its next
    ones usually arrive together (one read), but reach the lane one per
    scheduler pass or two, and taking the first alone would send it alone.
    """
    seen, still = len(queue), 0
    while still < 2 and len(queue) < most:
        await trio.lowlevel.cancel_shielded_checkpoint()
        still = still + 1 if len(queue) == seen else 0
        seen = len(queue)


async def run_batch(jobs: list[Job], market: Market, timeout: float, log: StructuredLogger) -> None:
    """Run consecutive command jobs' parts for ``market`` as one ordered batch (group commit).

    The backend applies them in this order and reports each outcome as soon as
    it is known, so each job is answered (or its fan-out part recorded) as
    early as it would be one at a time. Whatever is still unreported when the
    time bound expires gets ``timeout`` (indeterminate), as a lone command would.
    """
    name = market.name
    settled = 0
    last_seq = 0

    def report(i: int, outcome: CommandResult | ShardError) -> None:
        nonlocal settled, last_seq
        job = jobs[i]
        if isinstance(outcome, CommandResult):
            if outcome.seq <= last_seq:  # the backend broke its promise: say so loudly
                log.error(
                    "batch applied out of order", market=name, seq=outcome.seq, after=last_seq
                )
            last_seq = outcome.seq
            job.settle(name, outcome, None, log)
        else:
            job.settle(name, None, from_backend(outcome, is_command=True), log)
        settled = i + 1

    with trio.move_on_after(timeout) as scope:
        try:
            await market.backend.submit_ordered([job.commands[name] for job in jobs], report)
        except Exception as exc:
            error = _backend_error(exc, name, "batch", True, log)
            for job in jobs[settled:]:
                job.settle(name, None, error, log)
            settled = len(jobs)
    if scope.cancelled_caught:
        for job in jobs[settled:]:
            job.settle(name, None, timed_out(is_command=True), log)
    metrics.BATCHED.observe(len(jobs))


def _backend_error(
    exc: Exception, market: str, op: str, is_command: bool, log: StructuredLogger
) -> GatewayError:
    if not isinstance(exc, ShardError):
        log.error("backend call failed", market=market, op=op, exc_info=exc)
    return from_backend(exc, is_command=is_command)


def fills_limit(body: Fills) -> int:
    """The merged page size of a fills query without market (the engine's default is 100)."""
    return body.limit if body.limit is not None else 100

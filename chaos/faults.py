"""The fault schedule: planned from a seed, injected into a running chaos cluster.

:func:`plan_faults` is pure: the same seed gives the same sequence of fault
kinds, markets, durations and choices, one fault at a time with a quiet gap
after each (so recovery can be seen and measured). Which replica is the
leader is only known at run time, so :func:`inject` resolves "the leader" or
"a follower" when the fault starts.

Kinds: ``kill_leader``/``kill_follower`` (kill -9, restart after a while),
``pause_leader``/``pause_follower`` (SIGSTOP for longer than the election
timeout, then SIGCONT), ``isolate_leader`` (both ways), ``partition`` (one
replica against the other two), ``asymmetric`` (one direction of the
leader's links), ``delay`` (slow links of one replica), ``torn_wal``
(kill -9 a follower, cut a few bytes off its newest WAL segment, restart),
``kill_gateway``, ``transfer_leader`` (``clob admin transfer-leader`` to a
follower, under load; its "failover" is the time until another replica leads)
and ``replace_follower`` (a spare joins the group, a follower is removed and
retired: :mod:`chaos.replace`). "The leader" and "a follower" are always
resolved among the group's *current* members.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import attrs
import trio

from chaos.history import FaultRecord, History
from chaos.kinds import FAULT_KINDS as FAULT_KINDS  # re-exported: the CLI and tests name it here
from chaos.membership import REPLACE_KIND
from chaos.replace import reconcile_market, replace_follower
from chaos.supervisor import ChaosCluster
from shard.node.api import ShardError
from shard.observability import get_logger

log = get_logger("chaos.faults")

_FAILOVER_LIMIT_S = 15.0
_MIN_GAP_S = 1.0  # between a fault that overran its planned time and the next one
# A replacement is not timed by the planner (it lasts as long as the catch-up takes);
# this is the time the plan leaves it before the next fault's quiet gap.
_REPLACE_PLANNED_S = (5.0, 8.0)


@attrs.frozen
class PlannedFault:
    at: float  # seconds after the run's start
    kind: str
    market: str
    duration: float  # seconds the fault lasts (down time, pause, partition)
    choice: int  # picks among followers / replicas / gateways at run time
    nbytes: int = 0  # torn_wal: bytes cut off
    delay: float = 0.0  # delay: seconds added to each chunk


def plan_faults(
    seed: int,
    seconds: float,
    markets: Sequence[str],
    *,
    election_timeout_s: float,
    kinds: Sequence[str] = FAULT_KINDS,
    warmup_s: float = 3.0,
    quiet_s: tuple[float, float] = (2.0, 4.0),
) -> list[PlannedFault]:
    """One fault at a time from ``warmup_s`` until a few seconds before the end."""
    rng = random.Random(seed)
    plan: list[PlannedFault] = []
    at = warmup_s
    # Every kind once in a shuffled round, then again: short runs still see variety.
    queue: list[str] = []
    while True:
        if not queue:
            queue = list(kinds)
            rng.shuffle(queue)
        kind = queue.pop()
        # pauses and partitions last well past the election timeout so leadership moves
        duration = rng.uniform(max(1.0, 2.5 * election_timeout_s), max(3.0, 5 * election_timeout_s))
        if kind == REPLACE_KIND:
            duration = rng.uniform(*_REPLACE_PLANNED_S)
        if at + duration + quiet_s[0] > seconds - 1.0:
            break
        plan.append(
            PlannedFault(
                at=round(at, 3),
                kind=kind,
                market=rng.choice(list(markets)),
                duration=round(duration, 3),
                choice=rng.randrange(1 << 16),
                nbytes=rng.randint(1, 64) if kind == "torn_wal" else 0,
                delay=round(rng.uniform(0.05, 0.2), 3) if kind == "delay" else 0.0,
            )
        )
        at += duration + rng.uniform(*quiet_s)
    return plan


async def _wait_new_leader(cluster: ChaosCluster, market: str, old: str) -> int | None:
    """ns from now until a leader other than ``old`` is reported (None: not in time)."""
    begin = time.monotonic_ns()
    with trio.move_on_after(_FAILOVER_LIMIT_S):
        while True:
            leader = await cluster.leader(market, skip=old)
            if leader is not None:
                return time.monotonic_ns() - begin
            await trio.sleep(0.02)
    return None


async def _with_failover(
    cluster: ChaosCluster, market: str, old: str, duration: float
) -> int | None:
    """Wait ``duration`` while measuring how long the group takes to elect a new leader."""
    failover: list[int | None] = [None]

    async def measure() -> None:
        failover[0] = await _wait_new_leader(cluster, market, old)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(measure)
        await trio.sleep(duration)
        nursery.cancel_scope.cancel()
    return failover[0]


async def _restart(cluster: ChaosCluster, name: str, errors: list[str]) -> None:
    try:
        await cluster.start(name)
    except (RuntimeError, trio.TooSlowError) as exc:
        errors.append(f"{name} did not restart: {exc}")
        log.error("restart failed", proc=name, error=str(exc))


async def inject(cluster: ChaosCluster, fault: PlannedFault, history: History) -> None:
    """Apply one planned fault for its duration, then undo it; record it in ``history``."""
    market = fault.market
    replicas = cluster.replicas(market)
    mesh = cluster.meshes[market]
    leader = await cluster.leader(market)
    followers = [r for r in replicas if r != leader]
    start = time.monotonic_ns()
    failover: int | None = None
    joined: int | None = None
    removed: int | None = None
    detail = ""
    errors: list[str] = []
    if fault.kind in (
        "kill_leader",
        "pause_leader",
        "isolate_leader",
        "asymmetric",
        "transfer_leader",
    ) and (leader is None):
        history.fault(FaultRecord(fault.kind, "-", market, start, start, "skipped: no leader"))
        return
    if fault.kind == "kill_leader":
        assert leader is not None
        target = leader
        await cluster.kill(target)
        failover = await _with_failover(cluster, market, target, fault.duration)
        await _restart(cluster, target, errors)
    elif fault.kind == "kill_follower":
        target = followers[fault.choice % len(followers)]
        await cluster.kill(target)
        await trio.sleep(fault.duration)
        await _restart(cluster, target, errors)
    elif fault.kind in ("pause_leader", "pause_follower"):
        target = leader if fault.kind == "pause_leader" and leader else followers[0]
        if fault.kind == "pause_follower":
            target = followers[fault.choice % len(followers)]
        cluster.pause(target)
        try:
            if fault.kind == "pause_leader":
                failover = await _with_failover(cluster, market, target, fault.duration)
            else:
                await trio.sleep(fault.duration)
        finally:
            cluster.resume(target)
    elif fault.kind == "isolate_leader":
        assert leader is not None
        target = leader
        mesh.isolate(target)
        try:
            failover = await _with_failover(cluster, market, target, fault.duration)
        finally:
            mesh.heal()
    elif fault.kind == "partition":
        lone = replicas[fault.choice % len(replicas)]
        target = f"{lone} | {', '.join(r for r in replicas if r != lone)}"
        mesh.partition([lone], [r for r in replicas if r != lone])
        try:
            await trio.sleep(fault.duration)
        finally:
            mesh.heal()
    elif fault.kind == "asymmetric":
        assert leader is not None
        outgoing = fault.choice % 2 == 0
        for follower in followers:
            if outgoing:
                mesh.block(leader, follower)
            else:
                mesh.block(follower, leader)
        target = f"{leader} {'->' if outgoing else '<-'} followers dropped"
        try:
            failover = await _with_failover(cluster, market, leader, fault.duration)
        finally:
            mesh.heal()
    elif fault.kind == "delay":
        target = replicas[fault.choice % len(replicas)]
        for other in replicas:
            if other != target:
                mesh.delay(target, other, fault.delay)
                mesh.delay(other, target, fault.delay)
        detail = f"{int(fault.delay * 1000)} ms each way"
        try:
            await trio.sleep(fault.duration)
        finally:
            mesh.heal()
    elif fault.kind == "torn_wal":
        # The torn record was fsynced (and maybe acknowledged): losing it is outside
        # Raft's fault model unless the other two replicas hold it. So only a follower
        # is torn, while the other two are up and no other fault is in effect.
        target = followers[fault.choice % len(followers)]
        await cluster.kill(target)
        torn = cluster.tear_wal(target, fault.nbytes)
        detail = f"cut {torn[1]} bytes of {torn[0]}" if torn else "no WAL to tear"
        await trio.sleep(fault.duration / 2)
        await _restart(cluster, target, errors)
    elif fault.kind == "transfer_leader":
        assert leader is not None
        target = followers[fault.choice % len(followers)]
        detail = f"from {leader}"
        try:
            await cluster.transfer_leader(market, target)
        except ShardError as exc:  # a leader change in between: the fault is a no-op
            detail += f"; refused: {exc}"
        failover = await _with_failover(cluster, market, leader, fault.duration)
    elif fault.kind == REPLACE_KIND:
        replaced = await replace_follower(cluster, market, fault.choice)
        target, detail = replaced.target, replaced.detail
        joined, removed = replaced.joined_ns, replaced.removed_ns
        if replaced.error:
            errors.append(replaced.error)
    elif fault.kind == "kill_gateway":
        gateways = [g.name for g in cluster.config.gateways]
        target = gateways[fault.choice % len(gateways)]
        market = ""
        await cluster.kill(target)
        await trio.sleep(fault.duration / 2)
        await _restart(cluster, target, errors)
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")
    record = FaultRecord(
        fault.kind,
        target,
        market or None,
        start,
        time.monotonic_ns(),
        detail,
        failover,
        "; ".join(errors) or None,
        joined,
        removed,
    )
    log.info("fault done", kind=fault.kind, target=target, failover_ns=failover)
    history.fault(record)


async def run_faults(
    cluster: ChaosCluster, plan: Sequence[PlannedFault], history: History, start: float
) -> None:
    """Inject ``plan`` in order, each at ``start + fault.at`` on the trio clock."""
    for fault in plan:
        # a fault that overran its plan (a slow replacement) still leaves a short gap
        await trio.sleep_until(max(start + fault.at, trio.current_time() + _MIN_GAP_S))
        await inject(cluster, fault, history)


async def heal_everything(cluster: ChaosCluster) -> list[str]:
    """Undo whatever is still in effect: heal links, resume and start every member and
    gateway; then set each group's members from its committed membership (a replacement
    cut short by the end of the run leaves a spare or a removed replica running).

    Returns the problems found reconciling the membership."""
    for mesh in cluster.meshes.values():
        mesh.heal()
    for name in cluster.processes:
        cluster.resume(name)
    for name in cluster.active():
        if not cluster.processes[name].running:
            await cluster.start(name)
    problems: list[str] = []
    for market in cluster.config.markets:
        problem = await reconcile_market(cluster, market.name)
        if problem:
            problems.append(problem)
    return problems

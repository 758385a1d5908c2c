"""The ``replace_follower`` fault: a spare replica joins a group under load, a follower leaves.

The spare (a configured ``join = true`` replica that never ran: an empty data
directory) is started, added as a learner and promoted to voter once it has
caught up (by entries, or by a snapshot install when the log was
compacted), as ``clob admin add-replica`` does; then one follower other than
the spare is removed (``clob admin remove-replica``) and, once the removal
is committed, stopped for good: *retired*. Its data directory stays for the
offline checks, where its committed log is a prefix of the others'.

Every step is read back from the group (the newest leader's status) rather
than assumed, and the harness's member list is set from the committed
membership at the end (:func:`reconcile_market`), also when the fault was
cancelled half-way (the run ended): then :func:`chaos.faults.heal_everything`
reconciles.
"""

from __future__ import annotations

import time

import attrs
import trio

from chaos.collect import fetch_events
from chaos.membership import (
    GroupView,
    change_toward,
    pick_removal,
    reconcile,
    stable_view,
)
from chaos.supervisor import ChaosCluster
from shard.node.api import ShardError
from shard.observability import get_logger

log = get_logger("chaos.replace")

_JOIN_LIMIT_S = 60.0  # start to committed voter: catch-up of a whole log under load
_LEAVE_LIMIT_S = 30.0
_SETTLE_LIMIT_S = 15.0  # a committed membership view, once no change is pending
_POLL_S = 0.05
_EVENTS_LIMIT_S = 15.0  # reading a leaving replica's applied events
_REFUSED_PAUSE_S = 0.2  # after a refusal (learner not caught up yet, a change uncommitted)


@attrs.frozen
class Replacement:
    """What one ``replace_follower`` fault did, for the fault record."""

    target: str  # "new <- removed"
    detail: str
    joined_ns: int | None  # first add request -> the spare is a voter, committed
    removed_ns: int | None  # first remove request -> the removal is committed
    error: str | None


async def drive(
    cluster: ChaosCluster, market: str, node: str, want: str, limit: float
) -> tuple[int | None, str]:
    """Move ``node`` to ``want`` (``"voter"`` or ``"absent"``) through the admin path and
    wait until that membership is committed.

    Returns (ns from the first request until committed, or None when not within
    ``limit`` seconds; the last refusal seen, for the report).
    """
    first: GroupView | None = None
    began: int | None = None
    refusal = ""
    with trio.move_on_after(limit):
        while True:
            view = await cluster.group_view(market)
            action = None if view is None else change_toward(view, node, want)
            if view is not None and action is None and stable_view(first, view):
                return (time.monotonic_ns() - (began or time.monotonic_ns())), refusal
            first = view
            if action is not None:
                began = began or time.monotonic_ns()
                try:
                    await cluster.admin(market, action, node=node)
                except ShardError as exc:  # not caught up yet, no leader, a change pending
                    refusal = f"{action}: {exc}"
                    await trio.sleep(_REFUSED_PAUSE_S)
                    continue
            await trio.sleep(_POLL_S)
    return None, refusal


async def committed_view(cluster: ChaosCluster, market: str, limit: float) -> GroupView | None:
    """The group's committed membership, as its leader reports it (None: no leader in time)."""
    first: GroupView | None = None
    with trio.move_on_after(limit):
        while True:
            view = await cluster.group_view(market)
            if stable_view(first, view):
                return view
            first = view
            await trio.sleep(_POLL_S)
    return None


async def reconcile_market(cluster: ChaosCluster, market: str) -> str | None:
    """Set the harness's members of ``market`` from the committed membership: start
    members that do not run, retire replicas that left. Returns a problem, or None."""
    view = await committed_view(cluster, market, _SETTLE_LIMIT_S)
    if view is None:
        return f"{market}: no leader reported a committed membership"
    pool = cluster.pool(market)
    running = [n for n in pool if cluster.processes[n].running]
    plan = reconcile(view, pool, running, cluster.retired)
    log.info("reconciled", market=market, members=plan.members, stop=plan.stop, start=plan.start)
    if plan.unknown:
        # a retired replica back in the group would mean a committed removal was undone
        return f"{market}: members {list(plan.unknown)} had been retired"
    for name in plan.stop:
        await _keep_events(cluster, market, name)
    try:
        await cluster.apply(market, plan)
    except (RuntimeError, trio.TooSlowError) as exc:
        return f"{market}: {exc}"
    return None


async def _keep_events(cluster: ChaosCluster, market: str, name: str) -> None:
    """Read a leaving replica's applied events before it stops (its process holds them)."""
    config = cluster.config.market(market)
    assert config is not None, market
    upto = await cluster.applied_seq(name)
    if not upto:
        return  # a spare that never applied anything, or not answering
    entries, problem = await fetch_events(
        config, name, upto, timeout=_EVENTS_LIMIT_S, secret=cluster.secret, tls=cluster.tls
    )
    if problem:
        log.warning("events of a leaving replica", proc=name, problem=problem)
    cluster.departed[name] = entries


async def replace_follower(cluster: ChaosCluster, market: str, choice: int) -> Replacement:
    """Start a spare, make it a voter, remove a follower and retire it (see module doc)."""
    spare = cluster.take_spare(market)
    if spare is None:
        return Replacement("-", "skipped: no spare left", None, None, None)
    problems: list[str] = []
    notes: list[str] = []
    joined: int | None = None
    removed: int | None = None
    gone: str | None = None
    began = time.monotonic_ns()
    try:
        await cluster.start(spare)
    except (RuntimeError, trio.TooSlowError) as exc:
        problems.append(f"{spare} did not start: {exc}")
    else:
        notes.append(f"{spare} up in {(time.monotonic_ns() - began) // 1_000_000} ms")
        joined, refusal = await drive(cluster, market, spare, "voter", _JOIN_LIMIT_S)
        if joined is None:
            problems.append(f"{spare} not a voter after {_JOIN_LIMIT_S:.0f} s ({refusal})")
            # take the learner out again (no effect on the quorum) before retiring it
            await drive(cluster, market, spare, "absent", _LEAVE_LIMIT_S)
        else:
            view = await committed_view(cluster, market, _SETTLE_LIMIT_S)
            if view is not None:
                gone = pick_removal(view.voters, view.leader, [spare], choice)
            if gone is None:
                notes.append("no follower to remove")
            else:
                removed, refusal = await drive(cluster, market, gone, "absent", _LEAVE_LIMIT_S)
                if removed is None:
                    problems.append(f"{gone} not removed after {_LEAVE_LIMIT_S:.0f} s ({refusal})")
    problem = await reconcile_market(cluster, market)
    if problem:
        problems.append(problem)
    notes.append("members " + ", ".join(cluster.replicas(market)))
    log.info(
        "replaced", market=market, spare=spare, gone=gone, joined_ns=joined, removed_ns=removed
    )
    return Replacement(
        f"{spare} <- {gone or '-'}", "; ".join(notes), joined, removed, "; ".join(problems) or None
    )

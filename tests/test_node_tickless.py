"""Tickless replicas: idle followers sleep through ticks, yet every timeout still fires on time."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from shard.node.client import ShardClient
from shard.node.offthread import run_off_thread
from shard.node.runtime import Replica
from shard.node.ticking import TickClock, WakeTimer
from tests.test_node_runtime import order, start_group, wait_until

# tests.node_cluster: tick_ms=10, election_ticks=20 (timeouts 0.2-0.4 s), heartbeat_ticks=2


def test_tick_clock_counts_whole_ticks_and_feeds_each_once() -> None:
    clock = TickClock(0.02, origin=100.0)
    assert clock.tick_at(100.0) == 0
    assert clock.tick_at(100.0 + 3 * 0.02) == 3  # exactly on a boundary, despite rounding
    assert clock.tick_at(100.079) == 3
    assert clock.take(3) == 3
    assert clock.take(3) == 0 and clock.take(2) == 0  # nothing twice, never backwards
    assert clock.wake_time(2) == pytest.approx(100.0 + 5 * 0.02)
    assert clock.wake_time(None) == math.inf
    for k in range(1, 2000):  # the wake time of tick k is counted as tick k
        assert clock.tick_at(clock.origin + k * clock.tick_s) == k


async def test_wake_timer_fires_once_at_a_movable_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    woken: list[float] = []
    timer = WakeTimer(lambda: woken.append(trio.current_time()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        start = trio.current_time()
        timer.set(start + 5)
        await trio.sleep(1)
        timer.set(start + 2)  # moved earlier while sleeping
        await trio.sleep(10)
        assert woken == [pytest.approx(start + 2)]
        timer.set(start + 20)
        timer.set(start + 30)  # moved later before it fired
        await trio.sleep(100)
        assert woken[1:] == [pytest.approx(start + 30)]
        assert timer.fired == 2 and timer.deadline == math.inf
        nursery.cancel_scope.cancel()


async def test_off_thread_calls_return_raise_and_finish_before_a_cancel_lands() -> None:
    assert await run_off_thread(lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        await run_off_thread(lambda: 1 // 0)
    finished: list[bool] = []

    def slow() -> None:
        time.sleep(0.2)
        finished.append(True)

    with trio.move_on_after(0.01) as scope:
        await run_off_thread(slow)
        assert finished == [True]  # the cancellation waited for the call to finish
        await trio.lowlevel.checkpoint()  # and is delivered at the next checkpoint
    assert scope.cancelled_caught


def _followers(group: Any) -> list[Replica]:
    leader = group.leader()
    return [r for r in group.replicas.values() if r is not leader]


async def test_idle_followers_sleep_through_ticks_and_hold_no_election(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery)
        leader = group.leader()
        assert leader is not None and leader.raft is not None
        term = leader.raft.term
        await trio.sleep(0.3)  # the first heartbeat rounds and digests settle
        followers = _followers(group)
        turns = {r.name: r.turns for r in followers}
        fired = {r.name: r._timer.fired for r in group.replicas.values()}
        await trio.sleep(1.0)  # 100 ticks
        for r in group.replicas.values():
            assert r.raft is not None and r.raft.term == term  # no election
            assert r.role == ("leader" if r is leader else "follower")
        for r in followers:
            # A heartbeat every 2 ticks wakes it (about 50 times); it never wakes on its own.
            assert r._timer.fired == fired[r.name]
            assert r.turns - turns[r.name] < 80
        # The leader wakes by itself for each heartbeat round, not for every tick.
        assert 20 <= leader._timer.fired - fired[leader.name] <= 60
        nursery.cancel_scope.cancel()


async def test_followers_time_out_and_elect_when_an_idle_leader_dies(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery)
        old = group.leader()
        assert old is not None and old.raft is not None
        term = old.raft.term
        await group.stop(old.name)
        stopped = trio.current_time()
        await wait_until(lambda: group.leader() is not None, timeout=5)
        elapsed = trio.current_time() - stopped
        new = group.leader()
        assert new is not None and new is not old and new.raft is not None
        assert new.raft.term > term
        # At most the longest randomized timeout (0.4 s) plus a pre-vote and a vote
        # round; generous for a loaded machine, far below "never".
        assert elapsed < 3.0
        nursery.cancel_scope.cancel()


async def test_heartbeats_that_arrive_during_a_slow_fsync_keep_a_follower_loyal(
    tmp_path: Path,
) -> None:
    """A follower's driver stuck in an fsync longer than its election timeout still sees
    the heartbeats that came meanwhile at the ticks they came: it does not campaign."""
    async with trio.open_nursery() as nursery:
        group = await start_group(tmp_path, nursery, durability="fsync")
        leader = group.leader()
        assert leader is not None and leader.raft is not None
        term = leader.raft.term
        follower = _followers(group)[0]
        storage = follower.storage
        assert storage is not None
        real_sync = storage.sync
        stalls: list[float] = []

        def slow_sync() -> None:
            if not stalls:
                stalls.append(time.monotonic())
                time.sleep(0.6)  # 60 ticks: longer than any election timeout (20-40)
            real_sync()

        storage.sync = slow_sync  # type: ignore[method-assign]
        roles: list[str] = []
        on_soft_state = follower._on_soft_state

        def record(role: Any, lead: str | None) -> None:
            roles.append(role.value)
            on_soft_state(role, lead)

        follower._on_soft_state = record  # type: ignore[method-assign,assignment]
        async with ShardClient(group.market, "t") as client:
            await client.submit(order(1))  # acknowledged by the leader and the other one
            await wait_until(lambda: bool(stalls))
            await trio.sleep(0.9)  # the stall ends and its 60 ticks are fed
        assert roles == []  # never pre-candidate or candidate
        assert follower.raft is not None and follower.raft.term == term
        assert follower.raft.lead == leader.name
        nursery.cancel_scope.cancel()

"""After a run: let the replicas settle, then read what each of them committed.

Two sources, used together:

* live, through the shard client protocol: each replica's status (applied
  seq, digest) and its applied events from seq 1 (``subscribe``), one
  replica at a time, so the events of all replicas can be compared;
* offline, once the processes are stopped: each replica's data directory,
  opened with :func:`shard.storage.open_storage` and re-applied through
  :class:`shard.statemachine.ReplicatedStateMachine` (which deduplicates by
  session, as the live replica did), giving the committed *commands* with
  their seqs, for the replay check.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import trio

from chaos.checker import CommittedEntry, CommittedLog
from chaos.committed import EngineBase
from chaos.supervisor import ChaosCluster
from config.schema import MarketConfig
from shard.engineapp import EngineApplication
from shard.node.api import NodeStatus, ShardError, SubscriptionGone
from shard.node.client import client_opener
from shard.node.subscription import Subscription
from shard.observability import get_logger
from shard.statemachine import ReplicatedStateMachine
from shard.storage import open_storage

log = get_logger("chaos.collect")


async def settle(cluster: ChaosCluster, timeout: float = 30.0) -> dict[str, list[NodeStatus]]:
    """Wait until every replica of every market reports the same applied seq and index twice.

    Returns the last statuses seen (also when the timeout expires first).
    """
    statuses: dict[str, list[NodeStatus]] = {}
    with trio.move_on_after(timeout):
        for market in cluster.config.markets:
            previous: tuple[int, int] | None = None
            while True:
                nodes = await cluster.status(market.name)
                statuses[market.name] = nodes
                seqs = {(n.applied_seq, n.applied_index) for n in nodes if n.reachable}
                if all(n.reachable for n in nodes) and len(seqs) == 1:
                    (seq,) = seqs
                    if seq == previous:
                        break
                    previous = seq
                else:
                    previous = None
                await trio.sleep(0.3)
    for market in cluster.config.markets:
        if market.name not in statuses:
            statuses[market.name] = await cluster.status(market.name)
    return statuses


async def fetch_events(
    market: MarketConfig,
    replica: str,
    upto_seq: int,
    timeout: float = 30.0,
    secret: bytes | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[list[CommittedEntry], str | None]:
    """One replica's applied events for seqs 1..upto_seq; (entries, problem or None).

    A replica restarted from a snapshot keeps events only from there on
    (``SubscriptionGone``): its events are then read from the oldest seq it
    keeps, and the problem says so.
    """
    address = next(r.client for r in market.replicas if r.name == replica)
    opening = client_opener(secret)
    entries: list[CommittedEntry] = []
    if upto_seq <= 0:
        return entries, None
    problem: str | None = None
    start = 1
    with trio.move_on_after(timeout) as scope:
        while True:
            try:
                async with Subscription(
                    [(replica, address)], start, retry_for=5.0, opening=opening, tls=tls
                ) as items:
                    async for item in items:
                        entries.append(CommittedEntry(item.seq, tuple(item.events)))
                        if item.seq >= upto_seq:
                            break
            except SubscriptionGone as exc:
                oldest = oldest_kept(str(exc))
                if start == 1 and not entries and oldest is not None and 1 < oldest <= upto_seq:
                    problem = f"{replica}: keeps events only from seq {oldest}"
                    start = oldest
                    continue
                problem = f"{replica}: {type(exc).__name__}: {exc}"
            except ShardError as exc:
                problem = f"{replica}: {type(exc).__name__}: {exc}"
            break
    if scope.cancelled_caught:
        problem = f"{replica}: timed out after seq {entries[-1].seq if entries else 0}"
    return entries, problem


def oldest_kept(message: str) -> int | None:
    """The oldest seq a replica keeps, from its ``SubscriptionGone`` message."""
    found = re.search(r"oldest kept is (\d+)", message)
    return int(found.group(1)) if found else None


class _RecordingApplication(EngineApplication):
    """The engine adapter that also keeps each applied command and its events."""

    def __init__(self, max_live_orders_per_user: int = 0) -> None:
        super().__init__(max_live_orders_per_user)
        self.applied: list[CommittedEntry] = []

    def apply(self, seq: int, command: bytes) -> Any:
        result = super().apply(seq, command)
        try:
            decoded = orjson.loads(command)
        except orjson.JSONDecodeError:
            decoded = {"undecodable": command.hex()}
        self.applied.append(CommittedEntry(seq, tuple(result[0]), decoded))
        return result


def read_offline(
    market: str, data_dir: Path, upto_seq: int | None = None, max_live_orders_per_user: int = 0
) -> CommittedLog:
    """The committed commands in a stopped replica's data directory, with their events.

    Only entries up to the persisted commit index are used. When the replica
    has a snapshot the log starts after it (``first_seq`` > 1), and the
    engine continues from the snapshot's state.
    """
    storage, recovered = open_storage(data_dir, "none")
    try:
        app = _RecordingApplication(max_live_orders_per_user)  # as the replica applied
        machine = ReplicatedStateMachine(app)
        base: EngineBase | None = None
        if recovered.snapshot is not None:
            machine.restore(recovered.snapshot.data)
            base = EngineBase(machine.seq, app.engine.snapshot())
        first_seq = machine.seq + 1
        commit = recovered.hard_state.commit
        for entry in recovered.entries:
            if entry.index > commit:
                break
            machine.apply_entry(entry)
        entries = [e for e in app.applied if upto_seq is None or e.seq <= upto_seq]
    finally:
        storage.close()
    if not entries:
        return CommittedLog(market, {}, first_seq, first_seq - 1, base)
    return CommittedLog.from_entries(market, entries, base)


def merge_logs(
    market: str, events: Mapping[str, list[CommittedEntry]], offline: CommittedLog | None
) -> CommittedLog:
    """The replicas' committed log: every replica's live events and a data directory's
    (``offline``: events and commands) together, as the longest gapless run of seqs.

    Replicas restarted from a snapshot stream events only from there, and a data
    directory holds only what follows its snapshot, so each source may cover a
    different span; seq by seq they agree (``check_replica_logs`` makes sure).
    Commands come from ``offline`` where it covers a seq.
    """
    by_seq: dict[int, CommittedEntry] = {}
    for entries in events.values():
        for entry in entries:
            by_seq.setdefault(entry.seq, entry)
    for seq, entry in (offline.entries if offline is not None else {}).items():
        known = by_seq.get(seq)
        if known is None:
            by_seq[seq] = entry
        elif known.command is None and entry.command is not None:
            by_seq[seq] = CommittedEntry(seq, known.events, entry.command)
    base = offline.base if offline is not None else None
    return CommittedLog.from_entries(market, _longest_run(by_seq), base)


def _longest_run(by_seq: Mapping[int, CommittedEntry]) -> list[CommittedEntry]:
    """The entries of the longest run of consecutive seqs (the latest of equals)."""
    best: tuple[int, int] = (0, 0)  # (length, first seq)
    for seq in by_seq:
        if seq - 1 in by_seq:
            continue  # not the start of a run
        end = seq
        while end + 1 in by_seq:
            end += 1
        best = max(best, (end - seq + 1, seq))
    length, first = best
    return [by_seq[s] for s in range(first, first + length)]


def merge_best(
    market: str, events: Mapping[str, list[CommittedEntry]], offline: Iterable[CommittedLog]
) -> CommittedLog:
    """:func:`merge_logs` with the data directory that lets the checks cover the most:
    first the longest committed log (every acknowledgement in it is checked), then the
    most seqs a replay can check.

    Replicas differ in where their snapshot compacted the log and in how far their
    persisted commit index got; a lagging one may start earliest and end soonest.
    """
    candidates = [merge_logs(market, events, None)]
    candidates += [merge_logs(market, events, copy) for copy in offline if copy.entries]

    def checked(log: CommittedLog) -> tuple[int, int]:
        span = log.replay_range()
        replayed = 0 if span is None else span[1] - span[0] + 1
        return log.last_seq - log.first_seq + 1, replayed

    return max(candidates, key=checked)  # the first of equals: the earliest listed


def replay_sources(
    market: str, events: Mapping[str, list[CommittedEntry]], offline: Iterable[CommittedLog]
) -> list[CommittedLog]:
    """One log per data directory holding commands (:func:`merge_logs`), each replayable
    from its own starting point.

    :func:`merge_best` keeps one data directory; with snapshots and replaced replicas
    each directory holds the commands of a different stretch (a removed replica's
    stops where it left, a spare's starts at the snapshot it installed), so replaying
    each one on its own checks the union of their stretches.
    """
    merged = [merge_logs(market, events, copy) for copy in offline if copy.entries]
    return [log for log in merged if log.replay_range() is not None]


def spans_text(spans: Iterable[tuple[int, int]]) -> tuple[str, int]:
    """``"1..485, 534..668"`` for the union of the seq ranges, and how many seqs it holds."""
    merged: list[list[int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return ", ".join(f"{a}..{b}" for a, b in merged), sum(b - a + 1 for a, b in merged)

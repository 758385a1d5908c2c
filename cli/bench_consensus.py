"""``clob bench consensus``: commands/s committed by an in-process 3-replica group.

Three Raft cores (:mod:`shard.raft`) run in one process, driven by one loop:
each round the leader proposes NORMAL entries (each a batch of small client
commands, :mod:`shard.proposals`), then every core's Ready is persisted with
real files through :mod:`shard.storage` (append + hard state, one ``sync``
per Ready: group commit; the three replicas' syncs run in parallel worker
threads unless ``--no-parallel-sync``), its messages are delivered in
memory, and the leader counts the commands that come back committed. The load is closed-loop:
the leader keeps at most ``--window`` commands uncommitted, so batches grow
to whatever the disk and CPU allow; the report says which sizes were reached.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import attrs
import msgpack
import orjson
import trio
import typer

from cli.apps import bench_app
from shard.raft import ProposalDropped, Raft, RaftConfig, Ready, Role
from shard.raft.messages import AppendEntries, Message
from shard.records import EntryKind, Membership
from shard.storage import Durability, Storage, open_storage

NAMES = ("bench-1", "bench-2", "bench-3")
_COMMAND = orjson.dumps(
    {
        "type": "new_order",
        "market": "BTC-USD",
        "user": "u1",
        "side": "buy",
        "price": "100.5",
        "qty": "1",
    }
)
_TICK_SECONDS = 0.01


@attrs.define
class _Replica:
    name: str
    raft: Raft
    storage: Storage
    syncs: int = 0
    applied: int = 0
    snapshot_index: int = 0
    snapshots: int = 0


@attrs.define
class _Counters:
    commands: int = 0
    entries: int = 0
    leader_syncs: int = 0
    leader_entries_synced: int = 0
    append_messages: int = 0
    append_entries: int = 0


def _buffer(replica: _Replica, rd: Ready) -> None:
    """Step 1 of the Ready contract, up to the sync: snapshot, entries, hard state."""
    storage = replica.storage
    if rd.snapshot is not None:
        storage.save_snapshot(rd.snapshot.meta, rd.snapshot.data, replace_log=True)
    if rd.entries:
        storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)


class _Group:
    """Three cores with their storage and an in-memory network."""

    def __init__(
        self, root: Path, durability: Durability, seed: int, compact_every: int, parallel: bool
    ) -> None:
        rng = random.Random(seed)
        self.compact_every = compact_every
        self.parallel_sync = parallel and durability is Durability.FSYNC
        members = Membership(NAMES)
        self.replicas: dict[str, _Replica] = {}
        for name in NAMES:
            storage, recovered = open_storage(root / name, durability)
            raft = Raft(
                RaftConfig(node_id=name, max_msg_entries=1024, max_uncommitted_entries=1 << 20),
                random.Random(rng.randrange(1 << 30)),
                membership=members,
                hard_state=recovered.hard_state,
                entries=recovered.entries,
            )
            self.replicas[name] = _Replica(name, raft, storage)
        self.counts = _Counters()
        self.pending: dict[int, tuple[int, int]] = {}  # index -> (term, commands)
        self.leader: _Replica | None = None
        self.lost = 0  # proposed commands whose entry was replaced by another term's

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.storage.close()

    def tick(self) -> None:
        for replica in self.replicas.values():
            replica.raft.tick()

    async def process(self) -> None:
        """One pass: persist, send, apply and advance every core's Ready."""
        readies: list[tuple[_Replica, Ready]] = []
        for replica in self.replicas.values():
            if replica.raft.has_ready():
                rd = replica.raft.ready()
                _buffer(replica, rd)
                readies.append((replica, rd))
        await self._sync([replica for replica, rd in readies if rd.must_sync()])
        outbox: list[Message] = []
        for replica, rd in readies:
            raft = replica.raft
            outbox.extend(rd.messages)
            if raft.role is Role.LEADER:
                self.leader = replica
                self._count_leader(rd)
            raft.advance(rd)
            if rd.committed_entries:
                replica.applied = rd.committed_entries[-1].index
                self._maybe_compact(replica)
        for message in outbox:
            if isinstance(message, AppendEntries) and message.entries:
                self.counts.append_messages += 1
                self.counts.append_entries += len(message.entries)
            self.replicas[message.dst].raft.step(message)

    async def _sync(self, replicas: list[_Replica]) -> None:
        """Make each replica's buffered records durable: one sync (one fsync) per replica.

        In parallel worker threads when ``parallel_sync`` (as three machines
        would), so the three fsyncs of a round overlap.
        """
        for replica in replicas:
            replica.syncs += 1
        if not self.parallel_sync or len(replicas) < 2:
            for replica in replicas:
                replica.storage.sync()
            return
        async with trio.open_nursery() as nursery:
            for replica in replicas:
                nursery.start_soon(trio.to_thread.run_sync, replica.storage.sync)

    def _maybe_compact(self, replica: _Replica) -> None:
        """Snapshot (a stand-in state) and compact, bounding memory and disk like a node."""
        applied = replica.applied
        if applied - replica.snapshot_index < self.compact_every:
            return
        snapshot = replica.raft.compact(applied, b"bench state machine")
        if snapshot is not None:
            replica.storage.save_snapshot(snapshot.meta, snapshot.data)
            replica.snapshot_index = applied
            replica.snapshots += 1

    def _count_leader(self, rd: Ready) -> None:
        counts = self.counts
        if rd.must_sync():
            counts.leader_syncs += 1
            counts.leader_entries_synced += len(rd.entries)
        for entry in rd.committed_entries:
            if entry.kind is not EntryKind.NORMAL:
                continue
            proposed = self.pending.pop(entry.index, None)
            if proposed is None:
                continue
            if proposed[0] == entry.term:
                counts.commands += proposed[1]
                counts.entries += 1
            else:
                self.lost += proposed[1]  # overwritten after a leader change

    async def elect(self) -> _Replica:
        first = self.replicas[NAMES[0]].raft
        first.campaign()
        for _ in range(1000):
            await self.process()
            if first.role is Role.LEADER and not first.has_ready():
                self.leader = self.replicas[NAMES[0]]
                return self.leader
            self.tick()
        raise RuntimeError("no leader elected")


def encode_commands(request_no: int, commands: int) -> bytes:
    """A NORMAL entry's data: ``commands`` proposals in :mod:`shard.proposals` format.

    Built as plain rows (what ``encode_batch`` produces) rather than through
    ``Proposal`` objects: packing client commands is the runtime's cost, not
    consensus's, and would otherwise dominate this benchmark.
    """
    rows = [["bench-client", request_no + i, request_no, _COMMAND] for i in range(commands)]
    return msgpack.packb(rows, use_bin_type=True)  # type: ignore[no-any-return]


def run_consensus_bench(
    root: Path,
    durability: Durability,
    seconds: float,
    commands_per_entry: int,
    window: int,
    progress: bool,
    *,
    compact_every: int = 2000,
    parallel_sync: bool = True,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the closed-loop benchmark for ``seconds``; return JSON-ready figures.

    Every replica snapshots and compacts its log each ``compact_every``
    applied entries. With ``parallel_sync`` the replicas of a round fsync in
    parallel worker threads (``trio.to_thread``), as separate machines would.
    """
    group = _Group(root, durability, seed, compact_every, parallel_sync)
    try:
        return trio.run(_drive, group, durability, seconds, commands_per_entry, window, progress)
    finally:
        group.close()


async def _drive(
    group: _Group,
    durability: Durability,
    seconds: float,
    commands_per_entry: int,
    window: int,
    progress: bool,
) -> dict[str, Any]:
    raft = (await group.elect()).raft
    counts = group.counts
    request_no = 0
    started = time.perf_counter()
    next_tick = started + _TICK_SECONDS
    next_report = started + 1.0
    now = started
    while now - started < seconds:
        uncommitted = request_no - counts.commands - group.lost
        while uncommitted + commands_per_entry <= window:
            try:
                index, term = raft.propose(encode_commands(request_no, commands_per_entry))
            except ProposalDropped:
                break
            group.pending[index] = (term, commands_per_entry)
            request_no += commands_per_entry
            uncommitted += commands_per_entry
        await group.process()
        now = time.perf_counter()
        if now >= next_tick:
            group.tick()
            next_tick = now + _TICK_SECONDS
        if progress and now >= next_report:
            next_report += 1.0
            rate = counts.commands / (now - started)
            typer.echo(
                f"  {durability}: {now - started:4.1f}s {counts.commands:,} commands "
                f"committed ({rate:,.0f}/s)",
                err=True,
            )
    elapsed = time.perf_counter() - started
    if raft.role is not Role.LEADER:
        raise RuntimeError("the leader lost its leadership during the benchmark")
    replicas = group.replicas.values()
    return {
        "durability": str(durability),
        "replicas": len(NAMES),
        "parallel_sync": group.parallel_sync,
        "seconds": elapsed,
        "commands": counts.commands,
        "entries": counts.entries,
        "commands_per_second": counts.commands / elapsed,
        "entries_per_second": counts.entries / elapsed,
        "commands_per_entry": commands_per_entry,
        "window_commands": window,
        "leader_syncs_per_second": counts.leader_syncs / elapsed,
        "entries_per_leader_sync": counts.leader_entries_synced / max(counts.leader_syncs, 1),
        "commands_per_leader_fsync": (
            counts.leader_entries_synced * commands_per_entry / max(counts.leader_syncs, 1)
        ),
        "entries_per_append_message": counts.append_entries / max(counts.append_messages, 1),
        "fsyncs": {r.name: r.storage.statistics().wal.fsyncs for r in replicas},
        "applied_index": {r.name: r.applied for r in replicas},
        "snapshots": sum(r.snapshots for r in replicas),
        "cores": os.cpu_count(),
    }


@bench_app.command("consensus")
def bench_consensus(
    durability: Annotated[
        str, typer.Option(help="fsync, none (unsafe) or both (fsync, then none).")
    ] = "both",
    seconds: Annotated[float, typer.Option(min=0.1, help="Measured seconds per mode.")] = 5.0,
    commands_per_entry: Annotated[
        int, typer.Option(min=1, help="Client commands batched into one log entry.")
    ] = 256,
    window: Annotated[
        int, typer.Option(min=1, help="Most commands the leader keeps uncommitted.")
    ] = 65_536,
    compact_every: Annotated[
        int, typer.Option(min=1, help="Each replica snapshots and compacts every N entries.")
    ] = 2000,
    parallel_sync: Annotated[
        bool,
        typer.Option(help="fsync the replicas of a round in parallel threads (as 3 machines)."),
    ] = True,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Data directories go here (default: temp).")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object per mode.")] = False,
) -> None:
    """Commands/s committed through an in-process 3-replica group with real storage."""
    if durability not in ("fsync", "none", "both"):
        raise typer.BadParameter("expected fsync, none or both", param_hint="--durability")
    both = [Durability.FSYNC, Durability.NONE]
    modes = both if durability == "both" else [Durability(durability)]
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="clob-bench-consensus-", dir=directory) as temp:
            result = run_consensus_bench(
                Path(temp),
                mode,
                seconds,
                commands_per_entry,
                window,
                progress=not json,
                compact_every=compact_every,
                parallel_sync=parallel_sync,
            )
        if json:
            typer.echo(orjson.dumps(result).decode())
            continue
        typer.echo(
            f"consensus {result['durability']}: {result['commands_per_second']:,.0f} commands/s, "
            f"{result['entries_per_second']:,.0f} entries/s committed by {result['replicas']} "
            f"replicas; batches: {result['commands_per_entry']} commands/entry, "
            f"{result['entries_per_leader_sync']:.1f} entries "
            f"({result['commands_per_leader_fsync']:,.0f} commands)/leader sync "
            f"({result['leader_syncs_per_second']:,.0f} syncs/s), "
            f"{result['entries_per_append_message']:.1f} entries/AppendEntries; "
            f"{result['cores']} cores"
        )

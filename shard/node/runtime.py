"""The replica runtime: trio drives the Raft core, storage and the state machine.

One :class:`Replica` per process (or several in one process for tests). Its
``serve`` owns a nursery with the peer transport, the ticker, the inbox pump,
the client server and the *driver*: the one task that feeds the Raft core
and executes its :class:`~shard.raft.Ready` batches.

Batching is what makes it fast. While the driver waits for an fsync (in a
worker thread), client submits, peer messages and ticks pile up; the next
turn proposes every waiting submit as one log entry and persists every new
entry with one fsync (group commit). A leader sends its AppendEntries before
its own fsync (Raft thesis §10.2.1: it counts itself towards a commit only
once its own write is durable), so the leader's and the followers' fsyncs
overlap. Nothing is acknowledged to a client before the entry is committed
(durable on a majority, leader included) and applied.

Refusals: a follower answers submits with ``not_leader`` and the leader's
name and client address; a replica whose storage failed (disk full) or whose
state digest disagreed with the leader's answers ``unavailable``.
"""

from __future__ import annotations

import random
import time
from typing import Any

import attrs
import trio

from config.schema import ClusterConfig, MarketConfig, ReplicaConfig
from shard.node import protocol
from shard.node.applied import AppliedRing
from shard.node.clientserver import ClientServer, Reply, Subscriber
from shard.node.digests import Checkpoint, DigestBook, state_digest
from shard.node.metrics import NodeMetrics
from shard.node.replica_admin import ReplicaAdmin
from shard.node.replica_state import ReplicaState
from shard.node.transport import PeerTransport
from shard.observability import get_logger
from shard.raft import NotLeader, ProposalDropped, Raft, RaftConfig, Ready, Role
from shard.raft import codec as raft_codec
from shard.raft.messages import (
    AppendEntries,
    Heartbeat,
    InstallSnapshot,
    ReadIndexResponse,
    TimeoutNow,
)
from shard.raft.ready import Snapshot as RaftSnapshot
from shard.records import Membership
from shard.statemachine import EngineApplication, ReplicatedStateMachine
from shard.storage import Storage, StorageError, open_storage
from shard.storage.errors import StorageFull

# Messages a leader may send before its own entries are durable (§10.2.1).
_EARLY = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow, ReadIndexResponse)
_BOOTSTRAP_CLIENT = "bootstrap"


@attrs.frozen
class ReplicaOptions:
    snapshot_every: int = 20_000  # applied log entries between snapshots (and digests)
    ring_capacity: int = 100_000  # applied commands kept for subscribers
    max_batch_commands: int = 4096  # proposals per log entry
    max_batch_bytes: int = 1 << 20
    read_timeout_ticks: int = 300  # a ReadIndex not answered by then gets `timeout`
    retain_entries: int = 4096  # log entries kept in memory after a snapshot


class Replica(ReplicaState, ReplicaAdmin):
    """One replica of one market's group; see the module docstring."""

    def __init__(
        self,
        cluster: ClusterConfig,
        name: str,
        options: ReplicaOptions = ReplicaOptions(),
        *,
        metrics: NodeMetrics | None = None,
    ) -> None:
        found = cluster.replica(name)
        if found is None:
            raise ValueError(f"no replica named {name!r} in the topology")
        self.cluster = cluster
        self.market: MarketConfig = found[0]
        self.me: ReplicaConfig = found[1]
        self.name = name
        self.options = options
        self.metrics = metrics or NodeMetrics(name, self.market.name)
        self.log = get_logger("shard.node", node=name, market=self.market.name)
        self.client_addresses = {r.name: r.client for r in self.market.replicas}
        self.transport = PeerTransport(
            cluster.cluster_id,
            name,
            self.me.raft,
            {r.name: r.raft for r in self.market.replicas},
        )
        self.ring = AppliedRing(options.ring_capacity)
        self.digests = DigestBook()
        self.app = EngineApplication()
        self.rsm = ReplicatedStateMachine(self.app)
        self.raft: Raft | None = None
        self.storage: Storage | None = None
        self.failure: str | None = None  # storage failed: no more acknowledgements
        self.client_port = 0
        self._wake = trio.Event()
        self._ticks = 0
        self._inbox: list[tuple[str, Any]] = []
        self._proposals: list[list[Any]] = []  # [client, req, ack, cmd] rows
        self._waiting: dict[tuple[str, int], list[Reply]] = {}
        self._init_reads()
        self._init_admin()
        self._bootstrapped_term = 0
        self._last_snapshot_index = 0
        self._pending_checkpoints: list[tuple[int, bytes]] = []

    # -- lifecycle ---------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[Replica] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover from disk, join the group and serve clients until cancelled.

        Owns every task of the replica; on cancellation (SIGTERM) the storage
        is closed after the driver stops, so nothing half-written is left
        beyond what recovery handles anyway.
        """
        storage, recovered = await trio.to_thread.run_sync(
            open_storage, self.me.data_dir, self.cluster.durability
        )
        self.storage = storage
        try:
            self._recover(recovered.snapshot, recovered.hard_state, recovered.entries)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.transport.serve)
                nursery.start_soon(self._pump_inbox)
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._drive)
                server = ClientServer(self, self.me.client, node=self.name)
                self.client_port = await nursery.start(server.serve)
                self.log.info("replica serving", client=self.me.client, raft=self.me.raft)
                task_status.started(self)
        finally:
            storage.close()

    def _recover(self, snapshot: Any, hard_state: Any, entries: Any) -> None:
        timing = self.cluster.timing
        config = RaftConfig(
            node_id=self.name,
            election_tick=timing.election_ticks,
            heartbeat_tick=timing.heartbeat_ticks,
        )
        raft_snapshot = RaftSnapshot(snapshot.meta, snapshot.data) if snapshot else None
        membership = None if self.me.join else Membership(self.market.initial_voters())
        if snapshot is not None:
            self.rsm.restore(snapshot.data)
            self._last_snapshot_index = snapshot.meta.index
        self.raft = Raft(
            config,
            random.Random(),
            membership=membership,
            hard_state=hard_state,
            snapshot=raft_snapshot,
            entries=entries,
        )
        self.ring.reset(self.rsm.seq)
        self.log.info(
            "recovered",
            snapshot_index=self._last_snapshot_index,
            entries=len(entries),
            term=hard_state.term,
            commit=hard_state.commit,
        )

    def wake(self) -> None:
        self._wake.set()

    async def _ticker(self) -> None:
        interval = self.cluster.timing.tick_ms / 1000
        deadline = trio.current_time()
        while True:
            deadline += interval
            await trio.sleep_until(deadline)
            self._ticks += 1
            self._wake.set()

    async def _pump_inbox(self) -> None:
        async for item in self.transport.received:
            self._inbox.append(item)
            self._wake.set()

    # -- the driver ----------------------------------------------------------

    async def _drive(self) -> None:
        raft = self.raft
        assert raft is not None
        while self.failure is None:
            await self._wake.wait()
            self._wake = trio.Event()
            self._absorb(raft)
            while raft.has_ready() and self.failure is None:
                ready = raft.ready()
                try:
                    await self._handle_ready(raft, ready)
                except StorageError as exc:
                    self._storage_failed(exc)
                    return
                raft.advance(ready)
                await self._after_advance(raft)
                self._absorb(raft)

    def _absorb(self, raft: Raft) -> None:
        """Feed the core everything that arrived since the last turn."""
        ticks, self._ticks = self._ticks, 0
        for _ in range(ticks):
            raft.tick()
        if ticks:
            self._expire_reads(ticks)
        if self._inbox:
            inbox, self._inbox = self._inbox, []
            for src, payload in inbox:
                self._step(raft, src, payload)
        if self._proposals:
            self._propose(raft)
        if self._queries:
            self._start_read(raft)

    def _step(self, raft: Raft, src: str, payload: Any) -> None:
        if isinstance(payload, dict):
            self._leader_digest(src, payload)
            return
        try:
            message = raft_codec.from_wire(payload)
        except (raft_codec.DecodeError, TypeError) as exc:
            self.log.warning("undecodable peer message", peer=src, error=str(exc))
            return
        if message.src != src or message.dst != self.name:
            self.log.warning("misaddressed peer message", peer=src, src=message.src)
            return
        raft.step(message)

    def _propose(self, raft: Raft) -> None:
        rows, self._proposals = self._proposals, []
        if raft.role is not Role.LEADER:
            for client, req, _, _ in rows:
                self._fail_waiters((client, req), self._not_leader_error())
            return
        limit_n, limit_bytes = self.options.max_batch_commands, self.options.max_batch_bytes
        start = 0
        while start < len(rows):
            end, size = start, 0
            while end < len(rows) and end - start < limit_n and size < limit_bytes:
                size += len(rows[end][3]) + 32
                end += 1
            batch = rows[start:end]
            start = end
            # Same bytes as shard.proposals.encode_batch, without a Proposal object per row.
            data = raft_codec.msgpack.packb(batch, use_bin_type=True)
            try:
                raft.propose(data)
            except NotLeader as exc:
                error = self._not_leader_error(exc.leader)
            except ProposalDropped as exc:
                error = protocol.error(protocol.UNAVAILABLE, f"proposal dropped: {exc}")
            else:
                self.metrics.entries_proposed.inc()
                continue
            for client, req, _, _ in batch:
                self._fail_waiters((client, req), error)

    async def _handle_ready(self, raft: Raft, ready: Ready) -> None:
        storage = self.storage
        assert storage is not None
        if ready.soft_state is not None:
            self._on_soft_state(ready.soft_state.role, ready.soft_state.leader)
        late = ready.messages
        if raft.role is Role.LEADER:
            self._send(m for m in ready.messages if isinstance(m, _EARLY))
            late = tuple(m for m in ready.messages if not isinstance(m, _EARLY))
        if ready.snapshot is not None:
            snap = ready.snapshot
            await trio.to_thread.run_sync(storage.save_snapshot, snap.meta, snap.data)
        if ready.entries:
            storage.append(list(ready.entries))
        if ready.hard_state is not None:
            storage.set_hard_state(ready.hard_state)
        if ready.must_sync():
            started = time.perf_counter()
            if self.cluster.durability == "fsync":
                await trio.to_thread.run_sync(storage.sync)
            else:
                storage.sync()  # hands bytes to the OS only: cheap enough inline
            self.metrics.fsync_seconds.observe(time.perf_counter() - started)
        self._send(late)
        if ready.snapshot is not None:
            self._install(ready.snapshot)
        if ready.committed_entries:
            self._apply(ready.committed_entries)
        for read in ready.read_states:
            self._read_ready(read.context, read.index)
        self._serve_reads()

    def _send(self, messages: Any) -> None:
        send = self.transport.send
        for m in messages:
            send(m.dst, raft_codec.to_wire(m))

    def _install(self, snapshot: RaftSnapshot) -> None:
        self.rsm.restore(snapshot.data)
        self._last_snapshot_index = snapshot.meta.index
        self.ring.reset(self.rsm.seq)
        self.log.info("installed snapshot", index=snapshot.meta.index, seq=self.rsm.seq)

    def _apply(self, entries: tuple[Any, ...]) -> None:
        every = self.options.snapshot_every
        start = 0
        while start < len(entries):
            end = start
            while end < len(entries):
                end += 1
                if entries[end - 1].index % every == 0:
                    break
            self._apply_segment(entries[start:end])
            last = entries[end - 1].index
            if last % every == 0:
                self._checkpoint()  # deterministic point: same index on every replica
            start = end

    def _apply_segment(self, entries: tuple[Any, ...]) -> None:
        outcomes = self.rsm.apply(entries)
        items: list[list[Any]] = []
        waiting = self._waiting
        for outcome in outcomes:
            if outcome.result is None:
                error = protocol.error(protocol.BAD_REQUEST, "request number already acknowledged")
                self._fail_waiters((outcome.client_id, outcome.request_no), error)
                continue
            events, levels = outcome.result
            if outcome.verdict.value == "new":
                items.append([outcome.seq, events, levels])
            replies = waiting.pop((outcome.client_id, outcome.request_no), None)
            if replies:
                for reply in replies:
                    reply({"t": "result", "seq": outcome.seq, "events": events})
            elif outcome.client_id == _BOOTSTRAP_CLIENT:
                self.log.info("bootstrap command applied", seq=outcome.seq, events=str(events))
        self.ring.publish(items)
        self.metrics.commands_applied.inc(len(items))

    def _checkpoint(self) -> Checkpoint:
        """Snapshot the state machine now (between entries) and record its digest."""
        data = self.rsm.snapshot()
        checkpoint = Checkpoint(self.rsm.applied_index, self.rsm.seq, state_digest(data))
        self._pending_checkpoints.append((checkpoint.index, data))
        self.metrics.snapshot_bytes.set(len(data))
        divergence = self.digests.record_own(checkpoint)
        if divergence is not None:
            self._diverged(divergence)
        raft = self.raft
        if raft is not None and raft.role is Role.LEADER:
            digest_message = {"t": "digest", **attrs.asdict(checkpoint)}
            for peer in self.client_addresses:
                if peer != self.name:
                    self.transport.send(peer, dict(digest_message))
        return checkpoint

    async def _after_advance(self, raft: Raft) -> None:
        if self._pending_checkpoints:
            index, data = self._pending_checkpoints[-1]
            self._pending_checkpoints.clear()
            snapshot = raft.compact(index, data, retain=self.options.retain_entries)
            if snapshot is not None:
                storage = self.storage
                assert storage is not None
                try:
                    await trio.to_thread.run_sync(storage.save_snapshot, snapshot.meta, data)
                except StorageError as exc:
                    self._storage_failed(exc)
                    return
                self._last_snapshot_index = index
                self.log.info("snapshot saved", index=index, seq=self.rsm.seq, bytes=len(data))
        self._complete_snapshot_requests()
        if raft.role is Role.LEADER and self._bootstrapped_term != raft.term:
            self._maybe_bootstrap(raft)
        self._update_metrics(raft)

    def _maybe_bootstrap(self, raft: Raft) -> None:
        """Once this leader's no-op is applied, create the market if the engine lacks it."""
        if self.rsm.applied_term != raft.term:
            return
        self._bootstrapped_term = raft.term
        if any(spec[0] == self.market.name for spec in self.app.engine.market_specs()):
            return
        command = {
            "type": "create_market",
            "market": self.market.name,
            "tick_size": self.market.tick_size,
            "lot_size": self.market.lot_size,
        }
        self.log.info("proposing create_market", market=self.market.name)
        # A fixed idempotency key: applied once however many leaders try.
        self._proposals.append([_BOOTSTRAP_CLIENT, 1, 1, raft_codec.msgpack_json(command)])
        self._wake.set()

    def _storage_failed(self, exc: StorageError) -> None:
        kind = "disk full" if isinstance(exc, StorageFull) else "storage error"
        self.failure = f"{kind}: {exc}"
        self.log.error("storage failed; no more acknowledgements", error=str(exc))
        error = protocol.error(protocol.UNAVAILABLE, self.failure)
        for key in list(self._waiting):
            self._fail_waiters(key, error)

    # -- ReplicaService (the client server calls these) ----------------------

    def submit(self, client: str, req: int, ack: int, cmd: bytes, reply: Reply) -> None:
        refusal = self._refusal()
        if refusal is not None:
            reply(refusal)
            return
        raft = self.raft
        assert raft is not None
        if raft.role is not Role.LEADER:
            reply(self._not_leader_error())
            return
        key = (client, req)
        replies = self._waiting.get(key)
        if replies is None:
            self._waiting[key] = [reply]
        else:
            replies.append(reply)
        self._proposals.append([client, req, ack, cmd])
        self._wake.set()

    def subscribe(self, from_seq: int, subscriber: Subscriber, reply: Reply) -> None:
        refusal = self._refusal()
        if refusal is not None:
            reply(refusal)
            return
        self.ring.subscribe(from_seq, subscriber, reply)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.ring.unsubscribe(subscriber)

    def _fail_waiters(self, key: tuple[str, int], error: protocol.Message) -> None:
        for reply in self._waiting.pop(key, ()):
            reply(dict(error))

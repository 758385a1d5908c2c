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

import time
from typing import Any

import attrs
import orjson
import trio

from config.schema import ClusterConfig, MarketConfig, ReplicaConfig
from shard.node import protocol
from shard.node.admin import replica_status, run_admin
from shard.node.applied import AppliedRing
from shard.node.clientserver import ClientServer, Reply, Subscriber
from shard.node.digests import Checkpoint, DigestBook, state_digest
from shard.node.metrics import NodeMetrics
from shard.node.options import ReplicaOptions, SnapshotRequest
from shard.node.reads import ReadQueue
from shard.node.recovery import build_raft
from shard.node.transport import PeerTransport
from shard.observability import get_logger
from shard.proposals import encode_rows, split_rows
from shard.raft import NotLeader, ProposalDropped, Raft, Ready, Role
from shard.raft import codec as raft_codec
from shard.raft.messages import (
    AppendEntries,
    Heartbeat,
    InstallSnapshot,
    ReadIndexResponse,
    TimeoutNow,
)
from shard.raft.ready import Snapshot as RaftSnapshot
from shard.sessions import Verdict
from shard.statemachine import EngineApplication, ReplicatedStateMachine
from shard.storage import Recovered, Storage, StorageError, open_storage
from shard.storage.errors import StorageFull

# Messages a leader may send before its own entries are durable (§10.2.1).
_EARLY = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow, ReadIndexResponse)
_BOOTSTRAP_CLIENT = "bootstrap"
_METRICS_EVERY_TICKS = 25  # gauges are refreshed this often, not on every Ready
_SLOW_SYNC_S = 0.1  # an fsync this slow delays heartbeats: worth a warning


class Replica:
    """One replica of one market's group; see the module docstring."""

    def __init__(
        self,
        cluster: ClusterConfig,
        name: str,
        options: ReplicaOptions | None = None,
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
        self.options = options = options or ReplicaOptions()
        self.metrics = metrics or NodeMetrics(name, self.market.name)
        self.log = get_logger("shard.node", node=name, market=self.market.name)
        self.client_addresses = {r.name: r.client for r in self.market.replicas}
        self.transport: PeerTransport = PeerTransport(
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
        self._metrics_ticks = 0
        self._inbox: list[tuple[str, Any]] = []
        self._proposals: list[list[Any]] = []  # [client, req, ack, cmd] rows
        self._waiting: dict[tuple[str, int], list[Reply]] = {}
        read_timeout_ticks = max(1, options.read_timeout_ms // cluster.timing.tick_ms)
        self.reads = ReadQueue(name, self.app, self.rsm, read_timeout_ticks)
        self.role = "follower"
        self.leader: str | None = None
        self.diverged = False
        self._snapshot_requests: list[SnapshotRequest] = []
        self._bootstrapped_term = 0
        self.last_snapshot_index = 0
        self._pending_checkpoints: list[tuple[int, bytes]] = []

    # -- lifecycle ---------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[Replica] = trio.TASK_STATUS_IGNORED
    ) -> None:
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
            self._recover(recovered)
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

    def _recover(self, recovered: Recovered) -> None:
        snapshot = recovered.snapshot
        if snapshot is not None:
            self.rsm.restore(snapshot.data)
            self.last_snapshot_index = snapshot.meta.index
        self.raft = build_raft(self.cluster, self.market, self.me, recovered)
        self.ring.reset(self.rsm.seq)
        self.log.info(
            "recovered",
            snapshot_index=self.last_snapshot_index,
            entries=len(recovered.entries),
            term=recovered.hard_state.term,
            commit=recovered.hard_state.commit,
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
            # Let every task that is ready run first (client readers, the inbox
            # pump), so that what arrived together is proposed as one entry.
            await trio.lowlevel.checkpoint()
            self._wake = trio.Event()
            self._absorb(raft)
            if self._snapshot_requests:
                await self._explicit_snapshot(raft)
            while raft.has_ready() and self.failure is None:
                if self._snapshot_requests:
                    await self._explicit_snapshot(raft)
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
        """Feed the core everything that arrived since the last turn.

        Messages go before ticks: after a long fsync many ticks are due at
        once, and the heartbeats (or acknowledgements) that arrived meanwhile
        must count first, or a follower would campaign (or a leader step down)
        although its peers were alive all along.
        """
        if self._inbox:
            inbox, self._inbox = self._inbox, []
            for src, payload in inbox:
                self._step(raft, src, payload)
        ticks, self._ticks = self._ticks, 0
        for _ in range(ticks):
            raft.tick()
        if ticks:
            self.reads.expire(ticks)
            self._metrics_ticks += ticks
            if self._metrics_ticks >= _METRICS_EVERY_TICKS:
                self._metrics_ticks = 0
                self._update_metrics(raft)
        if self._proposals and (
            raft.role is not Role.LEADER
            or raft.log.last_index() - raft.log.committed < self.options.max_pipeline_entries
        ):
            self._propose(raft)
        if self.reads.queued:
            self.reads.start(raft, self._no_leader_error())

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
                self._fail_waiters((client, req), self.not_leader_error())
            return
        options = self.options
        for batch in split_rows(rows, options.max_batch_commands, options.max_batch_bytes):
            data = encode_rows(batch)  # the shard.proposals batch format
            try:
                raft.propose(data)
            except NotLeader as exc:
                error = self.not_leader_error(exc.leader)
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
            elapsed = time.perf_counter() - started
            self.metrics.fsync_seconds.observe(elapsed)
            if elapsed > _SLOW_SYNC_S:
                self.log.warning("slow fsync", seconds=round(elapsed, 3))
        self._send(late)
        if ready.snapshot is not None:
            self._install(ready.snapshot)
        if ready.committed_entries:
            self._apply(ready.committed_entries)
        for read in ready.read_states:
            self.reads.confirmed(read.context, read.index)
        self.reads.serve()

    def _send(self, messages: Any) -> None:
        send = self.transport.send
        for m in messages:
            send(m.dst, raft_codec.to_wire(m))

    def _install(self, snapshot: RaftSnapshot) -> None:
        self.rsm.restore(snapshot.data)
        self.last_snapshot_index = snapshot.meta.index
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
        items: list[list[Any]] = []
        waiting = self._waiting
        new = Verdict.NEW
        for _, client_id, request_no, verdict, result, seq in self.rsm.apply_rows(entries):
            if result is None:
                # EXPIRED: below the session's acknowledged mark (a very late retry, or
                # the client's window outgrew the session table): applied before and
                # forgotten, or dropped now. The client cannot know which.
                error = protocol.error(
                    protocol.TIMEOUT, "request no longer remembered; outcome unknown"
                )
                error["indeterminate"] = True
                self._fail_waiters((client_id, request_no), error)
                continue
            events, levels = result
            if verdict is new:
                items.append([seq, events, levels])
            # A follower has nobody waiting: skip building a key per command.
            replies = waiting.pop((client_id, request_no), None) if waiting else None
            if replies:
                for reply in replies:
                    reply({"t": "result", "seq": seq, "events": events})
            elif client_id == _BOOTSTRAP_CLIENT:
                self.log.info("bootstrap command applied", seq=seq, events=str(events))
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
        await self._save_checkpoint(raft)
        if raft.role is Role.LEADER and self._bootstrapped_term != raft.term:
            self._maybe_bootstrap(raft)

    async def _save_checkpoint(self, raft: Raft) -> None:
        """Persist the newest checkpoint taken while applying and let the core compact."""
        if not self._pending_checkpoints:
            return
        index, data = self._pending_checkpoints[-1]
        self._pending_checkpoints.clear()
        snapshot = raft.compact(index, data, retain=self.options.retain_entries)
        if snapshot is None:
            return  # not newer than what the core holds (e.g. asked twice at one index)
        storage = self.storage
        assert storage is not None
        try:
            await trio.to_thread.run_sync(storage.save_snapshot, snapshot.meta, data)
        except StorageError as exc:
            self._storage_failed(exc)
            return
        self.last_snapshot_index = index
        self.log.info("snapshot saved", index=index, seq=self.rsm.seq, bytes=len(data))

    async def _explicit_snapshot(self, raft: Raft) -> None:
        """Serve ``admin snapshot``: checkpoint now, between two Readies."""
        requests, self._snapshot_requests = self._snapshot_requests, []
        checkpoint = self._checkpoint()
        await self._save_checkpoint(raft)
        for request in requests:
            request.checkpoint = checkpoint
            request.done.set()

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
        self._proposals.append([_BOOTSTRAP_CLIENT, 1, 1, orjson.dumps(command)])
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
            reply(self.not_leader_error())
            return
        if len(self._proposals) >= self.options.max_queued_commands:
            reply(
                protocol.error(protocol.UNAVAILABLE, "leader overloaded: too many queued submits")
            )
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

    def query(self, cmd: bytes, reply: Reply) -> None:
        refusal = self._refusal()
        if refusal is not None:
            reply(refusal)
            return
        self.reads.add(cmd, reply)
        self._wake.set()

    async def admin(self, request: protocol.Message) -> protocol.Message:
        return await run_admin(self, request)

    async def snapshot_now(self) -> Checkpoint:
        """Checkpoint (snapshot + digest) at the current applied index."""
        if self.failure is not None:
            raise StorageError(self.failure)
        request = SnapshotRequest()
        self._snapshot_requests.append(request)
        self._wake.set()
        await request.done.wait()
        assert request.checkpoint is not None
        return request.checkpoint

    def status(self) -> protocol.Message:
        return replica_status(self)

    # -- helpers ---------------------------------------------------------------

    def current_role(self) -> str:
        """The Raft role, ``learner`` for a follower that is not a voter, ``failed`` after a
        storage failure (the core may still think it leads, but it serves nothing)."""
        if self.failure is not None:
            return "failed"
        raft = self.raft
        if raft is not None and self.role == "follower" and self.name not in raft.membership.voters:
            return "learner"
        return self.role

    def lag(self, raft: Raft) -> dict[str, int]:
        if raft.role is not Role.LEADER:
            return {}
        last = raft.log.last_index()
        return {n: last - pr.match for n, pr in raft.progress.items() if n != self.name}

    def _refusal(self) -> protocol.Message | None:
        if self.failure is not None:
            return protocol.error(protocol.UNAVAILABLE, f"replica {self.name}: {self.failure}")
        if self.diverged:
            return protocol.error(
                protocol.UNAVAILABLE, f"replica {self.name} diverged from its leader"
            )
        if self.raft is None:
            return protocol.error(protocol.UNAVAILABLE, f"replica {self.name} is starting")
        return None

    def not_leader_error(self, leader: str | None = None) -> protocol.Message:
        leader = leader or self.leader
        if leader is None or leader == self.name:
            return self._no_leader_error()
        return protocol.error(
            protocol.NOT_LEADER,
            f"{self.name} is not the leader",
            leader=leader,
            leader_addr=self.client_addresses.get(leader),
        )

    def _no_leader_error(self) -> protocol.Message:
        return protocol.error(protocol.UNAVAILABLE, "no leader (election in progress?)")

    def _on_soft_state(self, role: Role, leader: str | None) -> None:
        was_leader = self.role == "leader"
        raft = self.raft
        assert raft is not None
        self.role = role.value
        self.metrics.set_role(self.current_role())
        if leader != self.leader or role is Role.LEADER:
            self.log.info("role changed", role=self.role, leader=leader, term=raft.term)
        self.leader = leader
        if was_leader and role is not Role.LEADER:
            # Our in-flight proposals may still commit under the new leader; the
            # clients retry there with the same idempotency keys.
            error = self.not_leader_error()
            for key in list(self._waiting):
                self._fail_waiters(key, error)
            self.reads.fail_all(error)

    def _leader_digest(self, src: str, payload: dict[str, Any]) -> None:
        if payload.get("t") != "digest" or src != self.leader:
            return
        try:
            checkpoint = Checkpoint(
                int(payload["index"]), int(payload["seq"]), str(payload["digest"])
            )
        except (KeyError, TypeError, ValueError):
            self.log.warning("malformed digest message", peer=src)
            return
        divergence = self.digests.record_leader(checkpoint)
        if divergence is not None:
            self._diverged(divergence)

    def _diverged(self, divergence: Any) -> None:
        self.diverged = True
        self.metrics.diverged.set(1)
        self.log.error(
            "STATE DIVERGED FROM LEADER: this replica stops serving clients",
            index=divergence.index,
            seq=divergence.seq,
            mine=divergence.mine,
            leader=divergence.leader,
        )
        self.ring.reset(self.rsm.seq)

    def _update_metrics(self, raft: Raft) -> None:
        self.metrics.refresh(
            self.current_role(),
            raft.term,
            raft.log.committed,
            self.rsm.applied_index,
            self.rsm.seq,
            self.lag(raft),
        )

"""The replica runtime: trio drives the Raft core, storage and the state machine.

One :class:`Replica` per process (or several in one process for tests). Its ``serve`` owns a
nursery with the peer transport, the ticker, the inbox pump, the client server and the
*driver*: the one task that feeds the Raft core and executes its :class:`~shard.raft.Ready`
batches.

Time is tickless (:mod:`shard.node.ticking`): the driver sleeps until the next tick that can
matter to the core (a leader's heartbeat, a follower's election timeout, a ReadIndex
timeout) or until work arrives, then feeds the core every tick that elapsed, in order with
the messages stamped with the tick they arrived in. An idle follower wakes only for
heartbeats.

Batching is what makes it fast. While the driver waits for an fsync (in a worker thread),
client submits, peer messages and ticks pile up; the next turn proposes every waiting submit
as one log entry and persists every new entry with one fsync (group commit), run in a worker
thread (:mod:`shard.node.offthread`). A leader sends its AppendEntries before its own fsync
(Raft thesis §10.2.1: it counts itself towards a commit only once its own write is durable),
so the leader's and the followers' fsyncs overlap. Nothing is acknowledged to a client
before the entry is committed (durable on a majority, leader included) and applied.

Refusals: a follower answers submits with ``not_leader`` and the leader's name and client
address; a replica whose storage failed (disk full) or whose state digest disagreed with the
leader's answers ``unavailable``.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from config.schema import ClusterConfig
from config.secret import read_secret
from shard.engineapp import EngineApplication
from shard.node import protocol
from shard.node.admin import follower_lag, replica_status, run_admin
from shard.node.applied import AppliedRing
from shard.node.authentication import Authenticator
from shard.node.clientserver import ClientServer, Reply, Subscriber
from shard.node.digests import (
    Checkpoint,
    DigestBook,
    digest_message,
    parse_digest_message,
    state_digest,
)
from shard.node.metrics import NodeMetrics
from shard.node.offthread import run_off_thread
from shard.node.options import ReplicaOptions, SnapshotRequest
from shard.node.reads import ReadQueue
from shard.node.recovery import build_raft, create_market_command
from shard.node.ticking import TickClock, WakeTimer
from shard.node.tls import replica_contexts
from shard.node.transport import PeerTransport
from shard.node.waiters import Waiters
from shard.observability import get_logger
from shard.proposals import encode_rows, split_rows, stamp_row
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
from shard.sessions import REGISTER, SYSTEM_SESSION, Verdict
from shard.statemachine import ReplicatedStateMachine
from shard.storage import Recovered, Storage, StorageError, open_storage
from shard.storage.errors import StorageFull

# Messages a leader may send before its own entries are durable (§10.2.1).
_EARLY = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow, ReadIndexResponse)
_BOOTSTRAP_CLIENT = SYSTEM_SESSION
_METRICS_EVERY_TICKS = 25  # gauges are refreshed this often, not on every Ready
_SLOW_SYNC_S = 0.1  # an fsync this slow delays heartbeats: worth a warning
# Peer messages waiting for the driver (the size of the channel they used to go
# through); beyond this they are dropped, as a full send queue drops (Raft resends).
# Raft's own flow control keeps the inbox far smaller unless a peer misbehaves.
_MAX_INBOX = 4096
_OVERLOADED = "leader overloaded: too many queued submits"


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
        self.market, self.me = found
        self.name = name
        self.options = options = options or ReplicaOptions()
        self.metrics = metrics or NodeMetrics(name, self.market.name)
        self.log = get_logger("shard.node", node=name, market=self.market.name)
        self.client_addresses = {r.name: r.client for r in self.market.replicas}
        secret = read_secret(cluster)  # SecretError names the file and what is wrong
        self.auth = Authenticator(secret) if secret is not None else None
        self.tls = replica_contexts(cluster, name)  # TlsError names the key; None: plain TCP
        self.transport: PeerTransport = PeerTransport(
            cluster.cluster_id,
            name,
            self.me.raft,
            {r.name: r.raft for r in self.market.replicas},
            deliver=self._received,
            auth=self.auth,
            tls=self.tls,
        )
        self.ring = AppliedRing(options.ring_capacity)
        self.digests = DigestBook()
        self.app = EngineApplication(self.market.max_live_orders_per_user)
        self.rsm = ReplicatedStateMachine(self.app)
        self.raft: Raft | None = None
        self.storage: Storage | None = None
        self.failure: str | None = None  # storage failed: no more acknowledgements
        self.client_port = 0
        self._wake = trio.Event()
        self._clock = TickClock(cluster.timing.tick_ms / 1000, 0.0)  # origin set by serve
        self._timer = WakeTimer(self.wake)
        self._metrics_ticks = 0
        self._inbox: list[tuple[int, str, Any]] = []  # (tick of arrival, peer, payload)
        self.inbox_dropped = 0
        self.turns = 0  # driver turns (each wake-up that looked for work)
        self._proposals: list[list[Any]] = []  # [client, req, ack, cmd] rows
        self.waiters = Waiters()
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
            self._clock = TickClock(self._clock.tick_s, trio.current_time())
            async with trio.open_nursery() as nursery:
                await nursery.start(self.transport.serve)
                nursery.start_soon(self._timer.run)
                nursery.start_soon(self._drive)
                tls = self.tls[0] if self.tls is not None else None  # the listener's context
                server = ClientServer(self, self.me.client, node=self.name, auth=self.auth, tls=tls)
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

    def _received(self, src: str, payload: Any) -> None:
        """A peer message (the transport calls this): stamp it with its tick and queue it."""
        if len(self._inbox) >= _MAX_INBOX:
            self.inbox_dropped += 1
            if self.inbox_dropped % 1000 == 1:
                self.log.warning("peer inbox full: dropping", peer=src, dropped=self.inbox_dropped)
            return
        self._inbox.append((self._clock.tick_at(trio.current_time()), src, payload))
        self._wake.set()

    def _wake_time(self, raft: Raft) -> float:
        """When the driver must wake with nothing else to do: the next tick that matters."""
        due = raft.ticks_to_deadline()
        reads = self.reads.ticks_to_deadline()
        if reads is not None and (due is None or reads < due):
            due = reads
        return self._clock.wake_time(due)

    # -- the driver ----------------------------------------------------------

    async def _drive(self) -> None:
        raft = self.raft
        assert raft is not None
        while self.failure is None:
            self._timer.set(self._wake_time(raft))
            await self._wake.wait()
            self.turns += 1
            # Let every task that is ready run first (client and peer readers),
            # so that what arrived together is proposed as one entry.
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
        """Feed the core everything that arrived since the last turn, in time order.

        Each message is stepped after the ticks that elapsed before it arrived
        and before the later ones: after a long fsync many ticks are due at
        once, and a heartbeat (or acknowledgement) that arrived in the middle
        must count from when it came, or a follower would campaign (or a leader
        step down) although its peers were alive all along.
        """
        clock = self._clock
        now = clock.tick_at(trio.current_time())
        if self._inbox:
            inbox, self._inbox = self._inbox, []
            for stamp, src, payload in inbox:
                if stamp > clock.fed:
                    self._tick(raft, clock.take(stamp))
                self._step(raft, src, payload)
        if now > clock.fed:
            self._tick(raft, clock.take(now))
        if self._proposals and (
            raft.role is not Role.LEADER
            or raft.log.last_index() - raft.log.committed < self.options.max_pipeline_entries
        ):
            self._propose(raft)
        if self.reads.queued:
            self.reads.start(raft, protocol.no_leader())

    def _tick(self, raft: Raft, ticks: int) -> None:
        for _ in range(ticks):
            raft.tick()
        self.reads.expire(ticks)
        self._metrics_ticks += ticks
        if self._metrics_ticks >= _METRICS_EVERY_TICKS:
            self._metrics_ticks = 0
            rsm = self.rsm
            self.metrics.refresh(
                self.current_role(),
                raft.term,
                raft.log.committed,
                rsm.applied_index,
                rsm.seq,
                follower_lag(raft),
            )

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
                self.waiters.fail((client, req), self.not_leader_error())
            return
        options = self.options
        now = time.time_ns() // 1000  # the batch's stamp: when its trades happen
        for batch in split_rows(rows, options.max_batch_commands, options.max_batch_bytes):
            data = encode_rows([stamp_row(now), *batch])  # the shard.proposals batch format
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
                self.waiters.fail((client, req), error)

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
            await run_off_thread(lambda: storage.save_snapshot(snap.meta, snap.data))
        if ready.entries:
            storage.append(list(ready.entries))
        if ready.hard_state is not None:
            storage.set_hard_state(ready.hard_state)
        if ready.must_sync():
            started = time.perf_counter()
            if self.cluster.durability == "fsync":
                await run_off_thread(storage.sync)
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
        waiting = self.waiters.replies
        new, duplicate = Verdict.NEW, Verdict.DUPLICATE
        for _, client_id, request_no, verdict, result, seq in self.rsm.apply_rows(entries):
            if verdict is not new and verdict is not duplicate:
                self.waiters.session_outcome(client_id, request_no, verdict, result)
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
            for peer in self.client_addresses:
                if peer != self.name:
                    self.transport.send(peer, digest_message(checkpoint))
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
            await run_off_thread(lambda: storage.save_snapshot(snapshot.meta, data))
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
        self.log.info("proposing create_market", market=self.market.name)
        # A fixed idempotency key: applied once however many leaders try.
        self._proposals.append([_BOOTSTRAP_CLIENT, 1, 1, create_market_command(self.market)])
        self._wake.set()

    def _storage_failed(self, exc: StorageError) -> None:
        kind = "disk full" if isinstance(exc, StorageFull) else "storage error"
        self.failure = f"{kind}: {exc}"
        self.log.error("storage failed; no more acknowledgements", error=str(exc))
        self.waiters.fail_all(protocol.error(protocol.UNAVAILABLE, self.failure))

    # -- ReplicaService (the client server calls these) ----------------------

    def submit(self, client: str, req: int, ack: int, cmd: bytes, reply: Reply) -> None:
        self.submit_batch([(client, req, ack, cmd, reply)])

    def register(self, label: str, reply: Reply) -> None:
        # A registration travels as a proposal with request number 0 (shard.sessions).
        self.submit_batch([(label, REGISTER, 0, b"", reply)])

    def submit_batch(self, items: list[tuple[str, int, int, bytes, Reply]]) -> None:
        """One client's ordered submits, queued together or refused together: were the
        first refused (queue full) and the second accepted after a drain, a retry of the
        first would apply it after the second. Queued rows are proposed in order, and a
        drain that fails one entry fails every later one."""
        raft = self.raft
        error = self._refusal()
        if error is None:
            assert raft is not None
            if raft.role is not Role.LEADER:
                error = self.not_leader_error()
            elif len(self._proposals) + len(items) > self.options.max_queued_commands:
                error = protocol.error(protocol.UNAVAILABLE, _OVERLOADED)
        if error is not None:
            for *_, reply in items:
                reply(dict(error))
            return
        add, proposals = self.waiters.add, self._proposals
        for client, req, ack, cmd, reply in items:
            add((client, req), reply)
            proposals.append([client, req, ack, cmd])
        self._wake.set()

    def subscribe(self, from_seq: int, subscriber: Subscriber, reply: Reply) -> None:
        refusal = self._refusal()
        if refusal is not None:
            reply(refusal)
            return
        self.ring.subscribe(from_seq, subscriber, reply)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.ring.unsubscribe(subscriber)

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

    def current_role(self) -> str:
        """The Raft role, ``learner`` for a follower that is not a voter, ``failed`` after a
        storage failure (the core may still think it leads, but it serves nothing)."""
        if self.failure is not None:
            return "failed"
        raft = self.raft
        if raft is not None and self.role == "follower" and self.name not in raft.membership.voters:
            return "learner"
        return self.role

    def _refusal(self) -> protocol.Message | None:
        if self.failure is not None:
            reason = f"replica {self.name}: {self.failure}"
        elif self.diverged:
            reason = f"replica {self.name} diverged from its leader"
        elif self.raft is None:
            reason = f"replica {self.name} is starting"
        else:
            return None
        return protocol.error(protocol.UNAVAILABLE, reason)

    def not_leader_error(self, leader: str | None = None) -> protocol.Message:
        return protocol.not_leader(self.name, leader or self.leader, self.client_addresses)

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
            self.waiters.fail_all(error)
            self.reads.fail_all(error)

    def _leader_digest(self, src: str, payload: dict[str, Any]) -> None:
        if src != self.leader:
            return
        checkpoint = parse_digest_message(payload)
        if checkpoint is None:
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

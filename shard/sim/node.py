"""One simulated replica: a Raft core, its simulated disk and its state machine.

The node follows the Ready contract exactly like the real runtime: write the
Ready to disk, wait for the sync (zero or more ticks, during which the core
keeps taking messages and ticks), then send the messages, restore/apply,
serve reads, and ``advance``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shard.proposals import STAMP, Proposal, encode_batch
from shard.raft import NotLeader, ProposalDropped, Raft, RaftConfig, Ready, Role
from shard.records import Membership
from shard.sessions import Verdict
from shard.sim.disk import SimDisk
from shard.statemachine import Application, Outcome, ReplicatedStateMachine

if TYPE_CHECKING:
    from shard.sim.cluster import SimCluster


class SimNode:
    def __init__(
        self,
        node_id: str,
        cluster: SimCluster,
        config: RaftConfig,
        bootstrap: Membership | None,
        make_app: Callable[[], Application],
    ) -> None:
        self.id = node_id
        self.cluster = cluster
        self.config = config
        self.bootstrap = bootstrap
        self.make_app = make_app
        self.disk = SimDisk()
        self.alive = False
        self.restart_at = 0
        self.boots = 0
        self.raft: Raft
        self.sm: ReplicatedStateMachine
        self.ready: Ready | None = None
        self.sent_early = False
        self.sync_at = 0
        self.waiting: dict[tuple[str, int], Any] = {}  # client requests this node accepted
        self.queued: list[Proposal] = []
        self.reads: list[tuple[bytes, int, int | None]] = []  # (context, floor, read index)
        # Each node's clock is off by its own few ticks (without drawing on the seeded
        # random stream), so a new leader's stamps may be behind its predecessor's.
        self.clock_skew = int(node_id.lstrip("n") or 0) * 7 % 31 - 15
        self.boot()

    def _new_state_machine(self) -> ReplicatedStateMachine:
        cfg = self.cluster.config
        return ReplicatedStateMachine(
            self.make_app(),
            max_clients=cfg.session_max_clients,
            min_idle_entries=cfg.session_min_idle_entries,
        )

    @property
    def rng(self) -> random.Random:
        return self.cluster.rng

    def boot(self) -> None:
        """Start (or restart) from what the disk durably holds."""
        d = self.disk.durable
        self.sm = self._new_state_machine()
        if d.snapshot is not None:
            self.sm.restore(d.snapshot.data)
        self.raft = Raft(
            self.config,
            self.rng,
            membership=self.bootstrap,
            hard_state=d.hard_state,
            snapshot=d.snapshot,
            entries=d.log_after_snapshot(),
        )
        self.alive = True
        self.ready = None
        self.boots += 1
        self.cluster.checker.on_restart(self.id)
        self.cluster.checker.on_log_reset(self.id, self.raft)

    def crash(self) -> str:
        self.alive = False
        self.ready = None
        self.waiting.clear()
        self.queued.clear()
        self.reads.clear()
        return self.disk.crash(self.rng, self.cluster.config.torn)

    # -- client side -----------------------------------------------------

    def accept(self, p: Proposal, client: Any) -> None:
        """A client submits through this node; raises NotLeader to redirect it."""
        if self.raft.role is not Role.LEADER:
            raise NotLeader(self.raft.lead)
        self.queued.append(p)
        self.waiting[(p.client_id, p.request_no)] = client

    def flush_proposals(self) -> None:
        """Propose everything queued this tick as one batch entry."""
        if not self.queued:
            return
        batch, self.queued = self.queued, []
        stamp = Proposal("", STAMP, self.cluster.now + self.clock_skew, b"")
        try:
            index, term = self.raft.propose(encode_batch([stamp, *batch]))
        except (NotLeader, ProposalDropped) as exc:
            self.cluster.trace.log(f"{self.id} drops {len(batch)} proposals: {exc}")
            return
        self.cluster.trace.log(f"{self.id} proposes {len(batch)} commands at {index}/t{term}")

    def read(self, context: bytes, floor: int) -> None:
        self.raft.read_index(context)  # may raise NotLeader
        self.reads.append((context, floor, None))

    # -- Ready processing -----------------------------------------------

    def io(self, now: int) -> None:
        if self.ready is not None and now >= self.sync_at:
            self._complete(self.ready)
        if self.ready is None and self.raft.has_ready():
            rd = self.raft.ready()
            if rd.snapshot is not None:
                self.cluster.checker.on_log_reset(self.id, self.raft)
            if rd.entries:
                prev = self.raft.log.term(rd.entries[0].index - 1)
                self.cluster.checker.on_entries(self.id, prev, rd.entries)
            self.disk.write_ready(rd.snapshot, rd.entries, rd.hard_state)
            self.ready = rd
            self.sent_early = rd.send_before_persist and self.rng.random() < 0.5
            if self.sent_early:
                self.cluster.stats["early_sends"] += 1
                for m in rd.messages:  # a leader may replicate while it persists
                    self.cluster.network.send(m, now)
            self.sync_at = now + self.rng.choice((0, 0, 0, 1, 2))
            if self.sync_at <= now:
                self._complete(rd)

    def _complete(self, rd: Ready) -> None:
        cl = self.cluster
        if rd.must_sync():
            self.disk.sync()  # otherwise the writes stay unsynced until a later Ready's sync
        if not self.sent_early:
            for m in rd.messages:
                cl.network.send(m, cl.now)
        if rd.soft_state is not None:
            s = rd.soft_state
            cl.trace.log(f"{self.id} is {s.role.value} of term {s.term} (leader {s.leader})")
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            cl.trace.log(f"{self.id} installs snapshot at {meta.index}/t{meta.term}")
            cl.stats["snapshot_installs"] += 1
            cl.checker.on_snapshot(self.id, meta.index, rd.snapshot.data)
            self.sm = self._new_state_machine()
            self.sm.restore(rd.snapshot.data)
        for e in rd.committed_entries:
            cl.checker.on_apply(self.id, e)
            before = self.sm.time
            for out in self.sm.apply_entry(e):
                self._outcome(out)
            cl.checker.on_time(self.id, e.index, before, self.sm.time)
        for rs in rd.read_states:
            self.reads = [(c, f, rs.index if c == rs.context else i) for c, f, i in self.reads]
        self.ready = None
        self.raft.advance(rd)
        cl.checker.on_commit(self.id, self.raft)
        self._serve_reads()
        r = self.raft
        if r.role is Role.LEADER and self.disk.durable.hard_state.term == r.term:
            # Leadership is real once the winning vote is durable and the first
            # messages may leave; a leader that crashed before that never existed.
            cl.note_leader(self)

    def _outcome(self, out: Outcome) -> None:
        self.cluster.checker.on_outcome(self.id, out)
        client = self.waiting.pop((out.client_id, out.request_no), None)
        if client is None:
            return
        if out.verdict is Verdict.REGISTERED:
            client.on_registered(self, out)
        elif out.result is not None:
            client.on_ack(self, out)
        else:
            client.on_expired(out)

    def _serve_reads(self) -> None:
        keep = []
        for ctx, floor, index in self.reads:
            if index is not None and self.sm.applied_index >= index:
                value = self.cluster.read_value(self)
                self.cluster.checker.on_read(self.id, floor, value)
                self.cluster.stats["reads"] += 1
            else:
                keep.append((ctx, floor, index))
        self.reads = keep

    def take_snapshot(self, retain: int) -> None:
        """Snapshot the state machine at its applied index and compact the log."""
        assert self.ready is None
        assert self.sm.applied_index == self.raft.log.applied
        data = self.sm.snapshot()
        snap = self.raft.compact(self.sm.applied_index, data, retain=retain)
        if snap is not None:
            self.disk.save_own_snapshot(snap)
            self.cluster.checker.on_snapshot(self.id, snap.meta.index, data)
            self.cluster.trace.log(f"{self.id} snapshots at {snap.meta.index} (retain {retain})")

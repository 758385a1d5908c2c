"""The leader side of Raft: replication, commitment, ReadIndex and transfer.

:class:`Leadership` is the base of :class:`shard.raft.core.Raft`; it holds
the per-follower :class:`~shard.raft.progress.Progress` table and everything
that only a leader does.
"""

from __future__ import annotations

from shard.raft.config import RaftConfig
from shard.raft.errors import NotLeader, ProposalDropped
from shard.raft.log import RaftLog
from shard.raft.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    SnapshotResponse,
    TimeoutNow,
)
from shard.raft.progress import Progress, ProgressState
from shard.raft.quorum import committed_index, has_quorum
from shard.raft.readonly import PendingRead, ReadOnly
from shard.raft.ready import ReadState, Role, Snapshot
from shard.records import Entry, EntryKind, Membership


class Leadership:
    """Leader-only state and behaviour; see :class:`shard.raft.core.Raft`."""

    # Provided by Raft.
    config: RaftConfig
    id: str
    log: RaftLog
    term: int
    role: Role
    lead: str | None
    membership: Membership
    snapshot: Snapshot | None
    election_elapsed: int
    heartbeat_elapsed: int
    read_only: ReadOnly
    read_states: list[ReadState]
    msgs: list[Message]
    _config_indices: list[int]

    def _init_leadership(self) -> None:
        self.progress: dict[str, Progress] = {}
        self.lead_transferee: str | None = None
        self._reads_before_commit: list[tuple[bytes, str]] = []

    def _reset_leadership(self) -> None:
        self.progress = {}
        self.lead_transferee = None
        self.read_only.reset()
        self._reads_before_commit = []

    def _become_follower(self, term: int, lead: str | None) -> None:
        raise NotImplementedError

    def _after_append(self, first: int) -> None:
        raise NotImplementedError

    def _send(self, m: Message) -> None:
        raise NotImplementedError

    # -- public leader inputs ------------------------------------------

    def transfer_leader(self, target: str) -> None:
        """Hand leadership to ``target`` (thesis §3.10); proposals pause meanwhile.

        Once ``target`` has our whole log we send it TimeoutNow; the transfer
        is abandoned after an election timeout.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.lead)
        if target == self.id:
            return
        if target not in self.membership.voters:
            raise ProposalDropped(f"{target} is not a voter")
        self.lead_transferee = target
        self.election_elapsed = 0
        if self.progress[target].match == self.log.last_index():
            self._send(TimeoutNow(self.id, target, self.term))
        else:
            self._send_append(target)

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.lead)
        if self.lead_transferee is not None:
            raise ProposalDropped(f"leadership transfer to {self.lead_transferee} in progress")
        if self.log.last_index() - self.log.committed >= self.config.max_uncommitted_entries:
            raise ProposalDropped("too many uncommitted entries")

    # -- becoming and being leader ---------------------------------------

    def _start_leading(self) -> None:
        self.role = Role.LEADER
        self.lead = self.id
        for node in self.membership.all_nodes():
            self._add_progress(node)
        me = self.progress.get(self.id)
        if me is not None:
            me.maybe_update(self.log.stable)
            me.become_replicate()
        # A NOOP of our term lets us commit what earlier terms left behind (§5.4.2).
        noop = Entry(self.term, self.log.last_index() + 1, EntryKind.NOOP, b"")
        self._leader_append([noop])

    def _add_progress(self, node: str) -> None:
        pr = Progress(
            self.log.last_index() + 1,
            max_inflight=self.config.max_inflight,
            max_inflight_bytes=self.config.max_inflight_bytes,
        )
        pr.recent_active = True  # give every peer a full election timeout
        self.progress[node] = pr

    def _membership_changed(self) -> None:
        if self.role is not Role.LEADER:
            return
        members = self.membership.all_nodes()
        for node in members:  # in membership order: message order must be deterministic
            if node not in self.progress:
                self._add_progress(node)
        for node in [n for n in self.progress if n not in members]:
            del self.progress[node]
        if self.lead_transferee is not None and self.lead_transferee not in members:
            self.lead_transferee = None

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum:
                active = [n for n, pr in self.progress.items() if pr.recent_active or n == self.id]
                if not has_quorum(self.membership.voters, active):
                    self._become_follower(self.term, None)  # CheckQuorum: we may be cut off
                    return
                for n, pr in self.progress.items():
                    pr.recent_active = n == self.id
            self.lead_transferee = None  # a transfer that did not finish in time is abandoned
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(self.read_only.last_context() or b"")
        for node, pr in self.progress.items():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_idle += 1
                if pr.snapshot_idle >= self.config.snapshot_retransmit_ticks:
                    self._send_snapshot_chunk(node)

    def _leader_ticks_to_deadline(self) -> int:
        """Ticks until the leader's next heartbeat, CheckQuorum/transfer check or
        snapshot chunk retransmission (see ``Raft.ticks_to_deadline``)."""
        config = self.config
        due = min(
            config.heartbeat_tick - self.heartbeat_elapsed,
            config.election_tick - self.election_elapsed,
        )
        for pr in self.progress.values():
            if pr.state is ProgressState.SNAPSHOT:
                due = min(due, config.snapshot_retransmit_ticks - pr.snapshot_idle)
        return max(1, due)

    def _leader_append(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        self._after_append(entries[0].index)
        self._bcast_append()

    def _self_persisted(self) -> None:
        me = self.progress.get(self.id)
        if me is not None:
            me.maybe_update(self.log.stable)
            self._maybe_commit()  # followers learn it from _flush_commit

    def _maybe_commit(self) -> bool:
        match = {n: pr.match for n, pr in self.progress.items()}
        index = committed_index(self.membership.voters, match)
        if index <= self.log.committed:
            return False
        # §5.4.2: only an entry of the current term is committed by counting replicas.
        if not self.config.unsafe_commit_old_terms and self.log.term(index) != self.term:
            return False
        self.log.commit_to(index)
        self._on_commit()
        return True

    def _on_commit(self) -> None:
        if self._reads_before_commit and self.log.term(self.log.committed) == self.term:
            waiting, self._reads_before_commit = self._reads_before_commit, []
            for context, origin in waiting:
                self._leader_read(context, origin)
        removed = self.id not in self.membership.voters
        if removed and (not self._config_indices or self._config_indices[-1] <= self.log.committed):
            # Our removal is committed (thesis §4.2.2): hand over and step down.
            best = max(
                (n for n in self.membership.voters if n in self.progress),
                key=lambda n: self.progress[n].match,
                default=None,
            )
            if best is not None and self.progress[best].match == self.log.last_index():
                self._send(TimeoutNow(self.id, best, self.term))
            self._become_follower(self.term, None)

    # -- sending ---------------------------------------------------------

    def _peers(self) -> list[str]:
        return [n for n in self.progress if n != self.id]

    def _bcast_append(self) -> None:
        for node in self._peers():
            self._send_append(node)

    def _flush_commit(self) -> None:
        """Tell every follower the commit index that no AppendEntries has carried yet.

        Called when a Ready is built, not on each commit: under load the entries
        proposed in the same turn carry the new commit index, so a commit costs
        no message (and no response) of its own. Idle, it still goes out at
        once, in the Ready that persists the commit.
        """
        committed = self.log.committed
        for node in self._peers():
            if self.progress[node].commit_sent < committed:
                self._send_append(node)

    def _bcast_heartbeat(self, context: bytes) -> None:
        for node in self._peers():
            commit = min(self.progress[node].match, self.log.committed)
            self._send(Heartbeat(self.id, node, self.term, commit, context))

    def _send_append(self, to: str, *, send_empty: bool = True) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        pr.next = min(pr.next, self.log.last_index() + 1)
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None:  # compacted away: only a snapshot can help
            if self.snapshot is None:
                return False
            pr.become_snapshot(self.snapshot.meta.index)
            self._send_snapshot_chunk(to)
            return True
        entries: tuple[Entry, ...] = ()
        if pr.next <= self.log.last_index():
            entries = self.log.slice(
                pr.next,
                self.log.last_index(),
                max_count=self.config.max_msg_entries,
                max_bytes=self.config.max_msg_bytes,
            )
        if not entries and not send_empty:
            return False
        msg = AppendEntries(self.id, to, self.term, prev, prev_term, entries, self.log.committed)
        self._send(msg)
        pr.commit_sent = self.log.committed
        if entries:
            pr.sent_entries(entries[-1].index, sum(len(e.data) for e in entries))
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot_chunk(self, to: str) -> None:
        snap = self.snapshot
        pr = self.progress[to]
        assert snap is not None
        if snap.meta.index != pr.snapshot_index:
            pr.become_snapshot(snap.meta.index)  # a newer snapshot: start over
        pr.snapshot_idle = 0
        off = pr.snapshot_offset
        chunk = snap.data[off : off + self.config.snapshot_chunk_bytes]
        done = off + len(chunk) >= len(snap.data)
        self._send(InstallSnapshot(self.id, to, self.term, snap.meta, off, chunk, done))

    # -- responses -------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        if isinstance(m, ReadIndexRequest):
            if m.src in self.progress:
                self._leader_read(m.context, m.src)
            return
        if not isinstance(m, AppendResponse | HeartbeatResponse | SnapshotResponse):
            return
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if isinstance(m, AppendResponse):
            self._handle_append_response(m, pr)
        elif isinstance(m, HeartbeatResponse):
            self._handle_heartbeat_response(m, pr)
        else:
            self._handle_snapshot_response(m, pr)

    def _handle_append_response(self, m: AppendResponse, pr: Progress) -> None:
        if not m.success:
            # Fast backtracking: skip every entry of ours past the follower's hint
            # whose term is newer than the follower's term there.
            probe = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
            if pr.maybe_decrease(m.index, probe + 1):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.src)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            if was_paused and pr.state is ProgressState.PROBE:
                self._send_append(m.src)
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.match >= pr.snapshot_index:
                pr.become_probe()
        else:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            if self.role is not Role.LEADER:
                return  # our own removal committed: we stepped down
            # Followers learn the new commit index from _flush_commit, at the next Ready:
            # by then the proposals of this turn are appended and carry it.
        elif was_paused:
            self._send_append(m.src)  # it may have missed the latest commit index
        while self._send_append(m.src, send_empty=False):
            pass
        if m.src == self.lead_transferee and pr.match == self.log.last_index():
            self._send(TimeoutNow(self.id, m.src, self.term))

    def _handle_heartbeat_response(self, m: HeartbeatResponse, pr: Progress) -> None:
        pr.probe_sent = False
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()  # a lost append must not stall the window forever
        if pr.match < self.log.last_index():
            self._send_append(m.src)
        if m.context:
            acks = self.read_only.ack(m.context, m.src)
            if acks is not None and has_quorum(self.membership.voters, acks):
                for read in self.read_only.release(m.context):
                    self._release_read(read)

    def _handle_snapshot_response(self, m: SnapshotResponse, pr: Progress) -> None:
        if m.done:
            pr.maybe_update(m.index)
            if pr.state is ProgressState.SNAPSHOT:
                pr.become_probe()
            self._send_append(m.src)
        elif pr.state is ProgressState.SNAPSHOT and m.index == pr.snapshot_index:
            pr.snapshot_offset = m.next_offset
            self._send_snapshot_chunk(m.src)

    # -- ReadIndex -------------------------------------------------------

    def _leader_read(self, context: bytes, origin: str) -> None:
        if self.log.term(self.log.committed) != self.term:
            # Until our NOOP commits we do not know the latest commit index (§6.4).
            self._reads_before_commit.append((context, origin))
            return
        index = self.log.committed
        if has_quorum(self.membership.voters, {self.id}):
            self._release_read(PendingRead(context, index, origin))
        elif self.read_only.add(context, index, origin, self.id):
            self._bcast_heartbeat(context)

    def _release_read(self, read: PendingRead) -> None:
        if read.origin == self.id:
            self.read_states.append(ReadState(read.context, read.index))
        else:
            self._send(ReadIndexResponse(self.id, read.origin, self.term, read.context, read.index))

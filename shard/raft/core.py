"""The Raft state machine: roles, elections, and the follower side of replication.

:class:`Raft` is driven by its owner (see :mod:`shard.raft` for the contract);
the leader-side machinery (replication, commit, ReadIndex, transfer) lives in
:class:`shard.raft.leader.Leadership`, which this class extends.
"""

from __future__ import annotations

from collections.abc import Sequence

from shard.raft.config import RaftConfig, RandomSource
from shard.raft.errors import NotLeader, ProposalDropped
from shard.raft.leader import Leadership
from shard.raft.log import RaftLog
from shard.raft.membership import (
    ChangeKind,
    MembershipChange,
    apply_change,
    decode_membership,
    encode_membership,
)
from shard.raft.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)
from shard.raft.quorum import VoteResult, vote_result
from shard.raft.readonly import ReadOnly
from shard.raft.ready import PeerStatus, ReadState, Ready, Role, Snapshot, SoftState, Status
from shard.records import Entry, EntryKind, HardState, Membership, SnapshotMeta


class Raft(Leadership):
    """One Raft node as a pure state machine (no I/O, no clock, injected randomness)."""

    def __init__(
        self,
        config: RaftConfig,
        rng: RandomSource,
        *,
        membership: Membership | None = None,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
        applied: int | None = None,
    ) -> None:
        """Start from what storage holds.

        ``membership`` bootstraps a brand-new group (used only when there is
        no snapshot); a node joining an existing group passes None and learns
        the membership from the leader. ``applied`` is the index the owner's
        state machine already reflects (default: the snapshot's index).
        """
        self.config = config
        self.id = config.node_id
        self._rng = rng
        self.role = Role.FOLLOWER
        self.read_only = ReadOnly()
        self._init_leadership()
        meta = snapshot.meta if snapshot else SnapshotMeta(0, 0, membership or Membership(()))
        self.log = RaftLog(meta.index, meta.term)
        self.snapshot: Snapshot | None = snapshot  # latest snapshot, sent to lagging followers
        self._base_membership = meta.membership  # membership at log.snap_index
        self._config_indices: list[int] = []  # CONFIG entries in the in-memory log
        self.membership = meta.membership
        self.log.append(list(entries))
        self.log.stable = self.log.last_index()
        self._after_append(self.log.first_index())
        hs = hard_state or HardState()
        self.term = hs.term
        self.vote: str | None = hs.vote
        if self.log.last_term() > self.term:
            # The hard state write was lost after the entries (a torn tail); we never
            # voted in the newer term or it would be on disk, so a blank vote is safe.
            self.term, self.vote = self.log.last_term(), None
        self.log.committed = max(min(hs.commit, self.log.last_index()), meta.index)
        self.log.applied = applied if applied is not None else meta.index
        self.lead: str | None = None
        self.votes: dict[str, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_tick
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self._pending_snapshot: Snapshot | None = None  # received from a leader, to persist
        self._incoming: tuple[SnapshotMeta, bytearray] | None = None  # chunks so far
        self._prev_hard = HardState(self.term, self.vote, self.log.committed)
        self._prev_soft: SoftState | None = None
        self._outstanding = False  # a Ready was handed out and not yet advanced
        self._become_follower(self.term, None)

    # -- public inputs ---------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_timeout:
            self._campaign(pre_vote=self.config.pre_vote)

    def ticks_to_deadline(self) -> int | None:
        """Ticks until the next :meth:`tick` that can do anything; None if none ever can.

        For an owner that sleeps instead of waking on every tick: calling
        :meth:`tick` fewer times than this (and nothing else) sends nothing
        and changes no role, so the owner may sleep that long, then feed
        every elapsed tick. It must still feed the ticks that elapsed before
        a message arrived before stepping that message (the lease check of
        thesis §4.2.3 reads the elapsed time). Always at least 1.
        """
        if self.role is Role.LEADER:
            return self._leader_ticks_to_deadline()
        if not self.promotable():
            return None  # a learner (or removed node) never campaigns on its own
        return max(1, self.randomized_timeout - self.election_elapsed)

    def campaign(self) -> None:
        """Start an election now (tests and operator tooling)."""
        if self.role is not Role.LEADER and self.promotable():
            self._campaign(pre_vote=self.config.pre_vote)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a NORMAL entry; returns its ``(index, term)``.

        Raises :class:`NotLeader` or :class:`ProposalDropped`. Being appended
        is no promise of commitment: the owner learns the outcome when the
        entry comes back in ``committed_entries`` (at that index, that term).
        """
        self._check_can_propose()
        index = self.log.last_index() + 1
        self._leader_append([Entry(self.term, index, EntryKind.NORMAL, data)])
        return index, self.term

    def propose_membership(self, change: MembershipChange) -> tuple[int, int]:
        """Append a CONFIG entry for a single-server change (effective once appended).

        Raises :class:`ProposalDropped` while another change is uncommitted,
        before this leader has committed an entry of its term, or when
        promoting a learner that has not caught up yet; ``InvalidChange`` if
        the change does not fit the current membership.
        """
        self._check_can_propose()
        if self.membership_change_pending():
            raise ProposalDropped("a membership change is still uncommitted")
        if self.log.term(self.log.committed) != self.term:
            raise ProposalDropped("leader has not committed an entry in its term yet")
        new = apply_change(self.membership, change)
        if change.kind is ChangeKind.PROMOTE:
            pr = self.progress.get(change.node)
            if pr is None or pr.match + self.config.learner_catchup_lag < self.log.last_index():
                raise ProposalDropped(f"learner {change.node} has not caught up yet")
        index = self.log.last_index() + 1
        self._leader_append([Entry(self.term, index, EntryKind.CONFIG, encode_membership(new))])
        return index, self.term

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; answered later in ``Ready.read_states``.

        ``context`` must be unique within the group (prefix it with the node
        id). On a follower the request is forwarded to the leader. A read may
        be dropped silently if leadership changes: the owner times it out.
        """
        if self.role is Role.LEADER:
            self._leader_read(context, self.id)
        elif self.lead is not None:
            self._send(ReadIndexRequest(self.id, self.lead, self.term, context))
        else:
            raise NotLeader(None)

    def compact(self, index: int, data: bytes, *, retain: int = 0) -> Snapshot | None:
        """The owner snapshotted its state machine at ``index`` (<= applied).

        Returns the :class:`Snapshot` (with its metadata) for the owner to
        store, or None if it is not newer than the one the core holds. The
        core keeps it to send to lagging followers and drops in-memory log
        entries up to ``index - retain`` (keeping a few lets slightly slow
        followers catch up without a snapshot). Storage may drop its entries
        up to ``index`` once the snapshot is durable.
        """
        assert index <= self.log.applied, (index, self.log.applied)
        term = self.log.term(index)
        if term is None or (self.snapshot is not None and index <= self.snapshot.meta.index):
            return None
        snap = Snapshot(SnapshotMeta(index, term, self._membership_at(index)), data)
        self.snapshot = snap
        cut = max(self.log.snap_index, min(index - retain, self.log.stable))
        if cut > self.log.snap_index:
            self._base_membership = self._membership_at(cut)
            self._config_indices = [i for i in self._config_indices if i > cut]
            self.log.compact(cut)
        return snap

    def step(self, m: Message) -> None:
        """Handle one message from a peer."""
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self.config.check_quorum
                    and self.lead is not None
                    and self.election_elapsed < self.config.election_tick
                )
                if in_lease and not m.transfer:
                    return  # thesis §4.2.3: a live leader makes us deaf to disruptors
            if (isinstance(m, RequestVote) and m.pre_vote) or (
                isinstance(m, VoteResponse) and m.pre_vote and m.granted
            ):
                pass  # a pre-vote (or its grant, sent in the asker's future term) changes no term
            else:
                lead = m.src if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot) else None
                self._become_follower(m.term, lead)
        elif m.term < self.term:
            if isinstance(m, AppendEntries | Heartbeat):
                # A deposed leader that missed the election: tell it our term.
                self._send(AppendResponse(self.id, m.src, self.term, False, 0))
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(VoteResponse(self.id, m.src, self.term, False, pre_vote=True))
            return
        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif isinstance(m, VoteResponse):
            self._handle_vote_response(m)
        else:
            self._step_follower(m)

    # -- Ready / advance -------------------------------------------------

    def has_ready(self) -> bool:
        """Whether :meth:`ready` has work (always False while a Ready is outstanding)."""
        if self._outstanding:
            return False
        if self.msgs or self.read_states or self._pending_snapshot is not None:
            return True
        log = self.log
        if log.stable < log.last_index() or log.applied < log.committed:
            return True
        hs, ss = self._prev_hard, self._prev_soft
        return (
            hs.term != self.term
            or hs.vote != self.vote
            or hs.commit != log.committed
            or ss is None
            or ss.role is not self.role
            or ss.leader != self.lead
            or ss.term != self.term
        )

    def ready(self) -> Ready:
        """Hand out the next batch of work; call :meth:`advance` when it is done."""
        assert not self._outstanding, "advance() the previous Ready first"
        if self.role is Role.LEADER:
            self._flush_commit()
        hs = self._hard_state()
        soft = self._soft_state()
        lo = self.log.applied + 1
        hi = min(self.log.committed, self.log.applied + self.config.max_apply_entries)
        committed = tuple(self.log.entry(i) for i in range(lo, hi + 1))
        prev = self._prev_hard
        early = (
            self.role is Role.LEADER
            and prev.term == self.term
            and prev.vote == self.vote
            and self._pending_snapshot is None
        )
        rd = Ready(
            hard_state=hs if hs != self._prev_hard else None,
            entries=self.log.unstable(),
            snapshot=self._pending_snapshot,
            messages=tuple(self.msgs),
            committed_entries=committed,
            read_states=tuple(self.read_states),
            soft_state=soft if soft != self._prev_soft else None,
            send_before_persist=early and bool(self.msgs),
            hard_state_must_sync=hs.term != prev.term or hs.vote != prev.vote,
        )
        self._prev_hard, self._prev_soft = hs, soft
        self._pending_snapshot = None
        self.msgs = []
        self.read_states = []
        self._outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The owner persisted, sent and applied everything in ``rd``."""
        assert self._outstanding
        self._outstanding = False
        for e in reversed(rd.entries):
            # The newest entry of this Ready still in our log (a conflicting append
            # may have replaced a suffix meanwhile): it and all before it are durable.
            if self.log.match_term(e.index, e.term):
                self.on_persisted(e.index, e.term)
                break
        if rd.committed_entries:
            self.log.applied = max(self.log.applied, rd.committed_entries[-1].index)

    def on_persisted(self, index: int, term: int) -> None:
        """Entries up to ``(index, term)`` are durable (also done by ``advance``)."""
        self.log.stable_to(index, term)
        if self.role is Role.LEADER:
            self._self_persisted()

    # -- queries ---------------------------------------------------------

    def membership_change_pending(self) -> bool:
        """Whether a CONFIG entry in our log is not committed yet."""
        return bool(self._config_indices) and self._config_indices[-1] > self.log.committed

    def promotable(self) -> bool:
        """Whether this node may campaign: it is a voter in its current membership."""
        return self.id in self.membership.voters

    def status(self) -> Status:
        peers = {
            n: PeerStatus(pr.match, pr.next, pr.state.value, pr.recent_active)
            for n, pr in self.progress.items()
            if n != self.id
        }
        return Status(
            node_id=self.id,
            role=self.role,
            term=self.term,
            leader=self.lead,
            commit=self.log.committed,
            applied=self.log.applied,
            last_index=self.log.last_index(),
            snapshot_index=self.snapshot.meta.index if self.snapshot else 0,
            voters=self.membership.voters,
            learners=self.membership.learners,
            peers=peers,
        )

    def hard_state(self) -> HardState:
        return self._hard_state()

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self.role, self.lead, self.term)

    # -- roles -----------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.lead = None
        self.votes = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        e = self.config.election_tick
        self.randomized_timeout = self._rng.randrange(e, 2 * e)
        self._reset_leadership()

    def _become_follower(self, term: int, lead: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead

    def _campaign(self, *, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote:
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            term = self.term + 1
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.id
            term = self.term
        self.votes = {self.id: True}
        if vote_result(self.membership.voters, self.votes) is VoteResult.WON:
            self._won(pre_vote)
            return
        for peer in self.membership.voters:
            if peer != self.id:
                req = RequestVote(
                    self.id,
                    peer,
                    term,
                    self.log.last_index(),
                    self.log.last_term(),
                    pre_vote=pre_vote,
                    transfer=transfer,
                )
                self._send(req)

    def _won(self, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(pre_vote=False)
        else:
            self._reset(self.term)
            self._start_leading()

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.lead is None)
            or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.last_index, m.last_term):
            # A granted pre-vote answers in the asker's future term, so it is not stale.
            self._send(VoteResponse(self.id, m.src, m.term, True, pre_vote=m.pre_vote))
            if not m.pre_vote:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._send(VoteResponse(self.id, m.src, self.term, False, pre_vote=m.pre_vote))

    def _handle_vote_response(self, m: VoteResponse) -> None:
        expected = Role.PRE_CANDIDATE if m.pre_vote else Role.CANDIDATE
        if self.role is not expected:
            return
        self.votes.setdefault(m.src, m.granted)
        result = vote_result(self.membership.voters, self.votes)
        if result is VoteResult.WON:
            self._won(m.pre_vote)
        elif result is VoteResult.LOST:
            self._become_follower(self.term, None)

    # -- follower side ---------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
            if self.role is not Role.FOLLOWER:
                self._become_follower(self.term, m.src)  # someone won this term
            self.lead = m.src
            self.election_elapsed = 0
            if isinstance(m, AppendEntries):
                self._handle_append(m)
            elif isinstance(m, Heartbeat):
                self.log.commit_to(min(m.commit, self.log.last_index()))
                self._send(HeartbeatResponse(self.id, m.src, self.term, m.context))
            else:
                self._handle_snapshot_chunk(m)
        elif isinstance(m, TimeoutNow):
            if self.promotable():
                self._campaign(pre_vote=False, transfer=True)
        elif isinstance(m, ReadIndexResponse):
            self.read_states.append(ReadState(m.context, m.index))
        # ReadIndexRequest to a non-leader and stale responses are dropped.

    def _handle_append(self, m: AppendEntries) -> None:
        if m.prev_index < self.log.committed:
            self._send(AppendResponse(self.id, m.src, self.term, True, self.log.committed))
            return
        old_last = self.log.last_index()
        last = self.log.maybe_append(m.prev_index, m.prev_term, m.entries)
        if last is None:
            hint = self.log.find_conflict_by_term(min(m.prev_index, old_last), m.prev_term)
            hint_term = self.log.term(hint) or 0
            rej = AppendResponse(self.id, m.src, self.term, False, m.prev_index, hint, hint_term)
            self._send(rej)
            return
        if m.entries:
            self._after_append(m.entries[0].index)
        self.log.commit_to(min(m.commit, last))
        self._send(AppendResponse(self.id, m.src, self.term, True, last))

    def _handle_snapshot_chunk(self, m: InstallSnapshot) -> None:
        meta = m.meta
        total = m.offset + len(m.data)
        if meta.index <= self.log.committed:
            # Already have everything it covers; report it installed.
            self._send(SnapshotResponse(self.id, m.src, self.term, meta.index, total, True))
            return
        if m.offset == 0:
            self._incoming = (meta, bytearray())
        if self._incoming is None or self._incoming[0] != meta:
            self._send(SnapshotResponse(self.id, m.src, self.term, meta.index, 0, False))
            return
        buf = self._incoming[1]
        if m.offset != len(buf):
            self._send(SnapshotResponse(self.id, m.src, self.term, meta.index, len(buf), False))
            return
        buf += m.data
        if not m.done:
            self._send(SnapshotResponse(self.id, m.src, self.term, meta.index, len(buf), False))
            return
        self._incoming = None
        self._restore(Snapshot(meta, bytes(buf)))
        self._send(SnapshotResponse(self.id, m.src, self.term, meta.index, len(buf), True))

    def _restore(self, snap: Snapshot) -> None:
        meta = snap.meta
        if self.log.match_term(meta.index, meta.term):
            self.log.commit_to(meta.index)  # our log already has it: just fast-forward
            return
        self.log.restore(meta.index, meta.term)
        self.snapshot = snap
        self._pending_snapshot = snap
        self._base_membership = meta.membership
        self._config_indices = []
        self.membership = meta.membership

    # -- membership bookkeeping -----------------------------------------

    def _after_append(self, first: int) -> None:
        """Entries from ``first`` on were (re)written: refresh the config in force."""
        log = self.log
        first = max(first, log.first_index())
        before = self._config_indices
        after = [i for i in before if i < first]
        base = log.snap_index + 1
        config = EntryKind.CONFIG
        for pos, e in enumerate(log.entries[first - base :]):
            if e.kind is config:
                after.append(first + pos)
        if after == before and (not after or after[-1] < first):
            return  # no CONFIG entry written or truncated: membership unchanged
        self._config_indices = after
        new = self._membership_at(log.last_index())
        if new != self.membership:
            self.membership = new
            self._membership_changed()

    def _membership_at(self, index: int) -> Membership:
        for i in reversed(self._config_indices):
            if i <= index:
                return decode_membership(self.log.entry(i).data)
        return self._base_membership

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

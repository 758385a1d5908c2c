"""A lock-step cluster of Raft cores for unit tests and scenario scripts.

Messages are delivered in FIFO order as soon as everything is quiet, storage
is an in-memory record that is always durable, and the test decides when
nodes tick and which links are cut. Anything with timing or crashes belongs
to the fault simulator (:mod:`shard.sim.cluster`).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable

import attrs

from shard.raft import Raft, RaftConfig, Snapshot
from shard.raft.messages import Message
from shard.records import Entry, EntryKind, HardState, Membership


@attrs.define
class MemoryStore:
    """What a node would have on disk."""

    hard_state: HardState = attrs.field(factory=HardState)
    entries: list[Entry] = attrs.field(factory=list)
    snapshot: Snapshot | None = None

    def save_entries(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            while self.entries and self.entries[-1].index >= e.index:
                self.entries.pop()
            self.entries.append(e)


class LockstepCluster:
    """``n`` cores wired by a perfect network that tests can cut."""

    def __init__(
        self,
        ids: Iterable[str],
        *,
        seed: int = 0,
        learners: Iterable[str] = (),
        make_config: Callable[[str], RaftConfig] | None = None,
    ) -> None:
        self.ids = list(ids)
        members = Membership(tuple(self.ids), tuple(learners))
        self.make_config = make_config or (lambda n: RaftConfig(node_id=n))
        self.rng = random.Random(seed)
        self.nodes: dict[str, Raft] = {}
        self.stores: dict[str, MemoryStore] = {}
        self.applied: dict[str, list[Entry]] = {}
        self.read_states: dict[str, list[tuple[bytes, int]]] = {}
        self.bootstrap: dict[str, Membership | None] = {}
        self.blocked: set[tuple[str, str]] = set()
        self.queue: deque[Message] = deque()
        self.sent: list[Message] = []  # every message handed to the network
        self.intercept: Callable[[Message], bool] | None = None  # return False to drop
        for n in [*self.ids, *learners]:
            self.add_node(n, membership=members)

    def add_node(self, node: str, membership: Membership | None = None) -> Raft:
        self.stores[node] = MemoryStore()
        self.bootstrap[node] = membership
        self.applied[node] = []
        self.read_states[node] = []
        raft = Raft(self.make_config(node), self.rng, membership=membership)
        self.nodes[node] = raft
        return raft

    def restart(self, node: str) -> Raft:
        """Rebuild a node from its store, as after a crash (nothing is lost here)."""
        st = self.stores[node]
        snap = st.snapshot
        raft = Raft(
            self.make_config(node),
            self.rng,
            membership=self.bootstrap[node],
            hard_state=st.hard_state,
            snapshot=snap,
            entries=[e for e in st.entries if snap is None or e.index > snap.meta.index],
        )
        self.applied[node] = []  # the state machine restarts from the snapshot
        self.nodes[node] = raft
        return raft

    # -- network control -------------------------------------------------

    def isolate(self, node: str) -> None:
        for other in self.nodes:
            if other != node:
                self.blocked |= {(node, other), (other, node)}

    def heal(self) -> None:
        self.blocked.clear()

    # -- driving ---------------------------------------------------------

    def process(self, limit: int = 100_000) -> None:
        """Handle Readys and deliver messages until nothing moves."""
        for _ in range(limit):
            moved = False
            for node, raft in self.nodes.items():
                while raft.has_ready():
                    self._handle_ready(node, raft)
                    moved = True
            if self.queue:
                self.deliver_one()
                moved = True
            if not moved:
                return
        raise AssertionError("cluster did not quiesce")

    def deliver_one(self) -> None:
        m = self.queue.popleft()
        if (m.src, m.dst) in self.blocked or m.dst not in self.nodes:
            return
        if self.intercept is not None and not self.intercept(m):
            return
        self.nodes[m.dst].step(m)

    def _handle_ready(self, node: str, raft: Raft) -> None:
        rd = raft.ready()
        st = self.stores[node]
        if rd.snapshot is not None:
            st.snapshot = rd.snapshot
            st.entries = []  # an installed snapshot replaces the whole log
            self.applied[node] = []
        st.save_entries(rd.entries)
        if rd.hard_state is not None:
            st.hard_state = rd.hard_state
        self.queue.extend(rd.messages)
        self.sent.extend(rd.messages)
        self.applied[node].extend(rd.committed_entries)
        self.read_states[node].extend((r.context, r.index) for r in rd.read_states)
        raft.advance(rd)

    def tick(self, nodes: Iterable[str] | None = None, times: int = 1) -> None:
        for _ in range(times):
            for n in list(nodes) if nodes is not None else list(self.nodes):
                self.nodes[n].tick()
            self.process()

    def elect(self, node: str) -> None:
        self.nodes[node].campaign()
        self.process()

    def leader(self) -> str | None:
        leaders = [n for n, r in self.nodes.items() if r.role.value == "leader"]
        return max(leaders, key=lambda n: self.nodes[n].term) if leaders else None

    def propose(self, node: str, data: bytes) -> tuple[int, int]:
        out = self.nodes[node].propose(data)
        self.process()
        return out

    def normal_applied(self, node: str) -> list[bytes]:
        return [e.data for e in self.applied[node] if e.kind is EntryKind.NORMAL]

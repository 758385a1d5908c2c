"""The fault simulator: a replica group in one process, driven by one seed.

Everything random (message delays and losses, crashes, partitions,
membership changes, client behaviour, election timeouts) comes from a single
``random.Random(seed)``, so a failing seed replays exactly. Each step is one
tick of simulated time; after every step the :class:`~shard.sim.checker.Checker`
verifies Raft's safety properties. At the end all faults are healed and the
group must elect a leader and finish every client command within a bounded
number of ticks (liveness).
"""

from __future__ import annotations

import random
import traceback
from collections import Counter

import attrs
import orjson

from shard.engineapp import EngineApplication
from shard.raft import ChangeKind, MembershipChange, RaftConfig, RaftError, Role
from shard.raft.membership import InvalidChange
from shard.records import Membership
from shard.sessions import session_label
from shard.sim.checker import Checker, Violation
from shard.sim.clients import SimClient
from shard.sim.faults import FaultInjector
from shard.sim.network import SimNetwork
from shard.sim.node import SimNode
from shard.sim.trace import Trace
from shard.statemachine import (
    Application,
    Outcome,
    RegisterApplication,
)


@attrs.frozen
class SimConfig:
    seed: int = 0
    nodes: int = 3
    steps: int = 1500
    clients: int = 3
    session_max_clients: int = 10_000  # below ``clients`` to exercise session eviction
    session_min_idle_entries: int = 10_000
    client_restart_rate: float = 0.0  # chance per idle step that a client starts a new session
    app: str = "register"  # or "engine"
    request_rate: float = 0.3
    read_rate: float = 0.03
    client_timeout: int = 40
    # network
    min_delay: int = 1
    max_delay: int = 3
    loss: float = 0.02
    duplicate: float = 0.02
    long_delay: float = 0.003
    # faults, per step
    crash_rate: float = 0.006
    leader_bias: float = 0.3  # share of crashes and partitions aimed at the leader
    torn: float = 0.5
    partition_rate: float = 0.006
    membership_rate: float = 0.004
    compact_rate: float = 0.01
    transfer_rate: float = 0.002
    max_nodes: int = 7
    liveness_ticks: int = 600
    # core tunables (small, to exercise batching, pipelining and chunking)
    election_tick: int = 10
    max_msg_entries: int = 4
    max_inflight: int = 4
    snapshot_chunk_bytes: int = 256
    unsafe_commit_old_terms: bool = False

    @classmethod
    def bug_hunting(cls, seed: int = 0, **changes: object) -> SimConfig:
        """Harsher faults aimed at leaders: finds commit-rule bugs in few seeds.

        Leaders are isolated often while clients keep writing to them, so
        several terms leave divergent uncommitted suffixes; one entry per
        message makes partial replication of such suffixes common.
        """
        base = cls(
            seed=seed,
            crash_rate=0.015,
            partition_rate=0.06,
            leader_bias=0.9,
            loss=0.1,
            max_delay=4,
            election_tick=4,
            request_rate=0.8,
            max_msg_entries=1,
            max_inflight=1,
            compact_rate=0.002,
            membership_rate=0.0,
        )
        return attrs.evolve(base, **changes)  # type: ignore[arg-type]

    @classmethod
    def profile(cls, name: str, seed: int = 0, **changes: object) -> SimConfig:
        """A named fault profile: ``default`` or ``bug-hunting``."""
        if name == "bug-hunting":
            return cls.bug_hunting(seed, **changes)
        if name == "default":
            return attrs.evolve(cls(seed=seed), **changes)  # type: ignore[arg-type]
        raise ValueError(f"unknown simulation profile {name!r}")


@attrs.define
class SimResult:
    seed: int
    steps: int
    ok: bool
    error: str | None
    trace: str
    stats: dict[str, int]


class SimCluster:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now = 0
        self.trace = Trace()
        self.checker = Checker()
        self.network = SimNetwork(
            self.rng,
            min_delay=config.min_delay,
            max_delay=config.max_delay,
            loss=config.loss,
            duplicate=config.duplicate,
            long_delay=config.long_delay,
        )
        self.stats: Counter[str] = Counter()
        self.nodes: dict[str, SimNode] = {}
        self._next_node = 1
        initial = [self._new_id() for _ in range(config.nodes)]
        members = Membership(tuple(initial))
        for n in initial:
            self._add_node(n, members)
        self.clients = [SimClient(f"c{i}", self) for i in range(1, config.clients + 1)]
        self.faults = FaultInjector(self)
        self._leaders_seen: set[tuple[str, int]] = set()
        self.acked_position = 0  # highest register position acknowledged to any client
        self._read_counter = 0

    # -- construction ---------------------------------------------------

    def _new_id(self) -> str:
        node = f"n{self._next_node}"
        self._next_node += 1
        return node

    def raft_config(self, node: str) -> RaftConfig:
        c = self.config
        return RaftConfig(
            node_id=node,
            election_tick=c.election_tick,
            heartbeat_tick=1,
            max_msg_entries=c.max_msg_entries,
            max_inflight=c.max_inflight,
            snapshot_chunk_bytes=c.snapshot_chunk_bytes,
            snapshot_retransmit_ticks=4,
            learner_catchup_lag=4,
            unsafe_commit_old_terms=c.unsafe_commit_old_terms,
        )

    def make_app(self) -> Application:
        if self.config.app == "engine":
            return EngineApplication()
        return RegisterApplication()

    def _add_node(self, node: str, bootstrap: Membership | None) -> SimNode:
        n = SimNode(node, self, self.raft_config(node), bootstrap, self.make_app)
        self.nodes[node] = n
        return n

    def make_command(self, client: str, req: int) -> bytes:
        if self.config.app != "engine":
            return f"{client}:{req}".encode()
        if req == 1:
            return orjson.dumps(
                {
                    "type": "create_market",
                    "market": f"M-{client}",
                    "tick_size": "1",
                    "lot_size": "1",
                }
            )
        side = self.rng.choice(("buy", "sell"))
        price = str(self.rng.randint(95, 105))
        return orjson.dumps(
            {
                "type": "new_order",
                "market": f"M-{client}",
                "user": f"u{self.rng.randint(1, 3)}",
                "side": side,
                "order_type": "limit",
                "price": price,
                "qty": str(self.rng.randint(1, 5)),
                "tif": "gtc",
            }
        )

    # -- queries ---------------------------------------------------------

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for n in self.nodes.values():
            if (
                n.alive
                and n.raft.role is Role.LEADER
                and (best is None or n.raft.term > best.raft.term)
            ):
                best = n
        return best

    def read_value(self, node: SimNode) -> int:
        app = node.sm.app
        return len(app.items) if isinstance(app, RegisterApplication) else node.sm.seq

    def on_acked(self, client: str, out: Outcome) -> None:
        self.stats["acked"] += 1
        if isinstance(out.result, int):
            self.acked_position = max(self.acked_position, out.result)
        self.trace.log(f"{client} acked req {out.request_no} seq {out.seq} at index {out.index}")

    # -- the step --------------------------------------------------------

    def step(self, *, faults: bool = True) -> None:
        self.now += 1
        self.trace.now = self.now
        if faults:
            self.faults.inject()
        self.faults.restart_due()
        for m in self.network.due(self.now):
            node = self.nodes.get(m.dst)
            if node is not None and node.alive:
                node.raft.step(m)
        for node in self.nodes.values():
            if node.alive:
                node.raft.tick()
        for c in self.clients:
            c.act(self.now, new_requests=faults)
        if faults and self.config.read_rate and self.rng.random() < self.config.read_rate:
            self._client_read()
        for node in self.nodes.values():
            if node.alive:
                node.flush_proposals()
                node.io(self.now)

    def note_leader(self, node: SimNode) -> None:
        key = (node.id, node.raft.term)
        if key not in self._leaders_seen:
            self._leaders_seen.add(key)
            self.stats["elections"] += 1
            self.checker.on_leader(node.id, node.raft)

    def _client_read(self) -> None:
        alive = [n for n in self.nodes.values() if n.alive]
        if not alive:
            return
        node = self.rng.choice(alive)
        self._read_counter += 1
        try:
            node.read(f"{node.id}:{self._read_counter}".encode(), self.acked_position)
        except RaftError:
            return

    # -- membership ------------------------------------------------------

    def change_membership(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        m = leader.raft.membership
        choices: list[MembershipChange] = []
        if len(self.nodes) < self.config.max_nodes and not m.learners:
            choices.append(MembershipChange(ChangeKind.ADD_LEARNER, f"n{self._next_node}"))
        choices += [MembershipChange(ChangeKind.PROMOTE, n) for n in m.learners]
        if len(m.voters) > 3:
            choices += [MembershipChange(ChangeKind.REMOVE, n) for n in m.voters]
        if not choices:
            return
        change = self.rng.choice(choices)
        try:
            leader.raft.propose_membership(change)
        except (RaftError, InvalidChange) as exc:
            self.trace.log(f"membership change {change.kind.value} {change.node} refused: {exc}")
            return
        self.stats["membership_changes"] += 1
        self.trace.log(f"{leader.id} proposes {change.kind.value} {change.node}")
        if change.kind is ChangeKind.ADD_LEARNER:
            self._add_node(self._new_id(), None)

    # -- run -------------------------------------------------------------

    def run(self) -> None:
        for _ in range(self.config.steps):
            self.step()
        self.heal_and_converge()

    def heal_and_converge(self) -> None:
        """Remove every fault; the group must then finish all work in bounded time."""
        self.trace.log("healing all faults for the liveness check")
        self.network.heal()
        self.network.loss = self.network.duplicate = self.network.long_delay = 0.0
        for node in self.nodes.values():
            if not node.alive and not self.faults.retired(node.id):
                node.boot()
        for _ in range(self.config.liveness_ticks):
            self.step(faults=False)
            if self._converged():
                self._final_checks()
                return
        raise Violation(
            f"liveness: not converged {self.config.liveness_ticks} ticks after healing "
            f"({self.status_line()})"
        )

    def _converged(self) -> bool:
        if any(c.outstanding is not None for c in self.clients):
            return False
        leader = self.leader()
        if leader is None:
            return False
        r = leader.raft
        if r.log.committed != r.log.last_index() or r.log.term(r.log.committed) != r.term:
            return False
        for n in r.membership.all_nodes():
            node = self.nodes.get(n)
            if node is None or not node.alive or node.sm.applied_index != r.log.committed:
                return False
        return True

    def _final_checks(self) -> None:
        leader = self.leader()
        assert leader is not None
        app = leader.sm.app
        if not isinstance(app, RegisterApplication):
            return
        counts = Counter(app.items)
        for (session, req), _ in self.checker.acks.items():
            cmd = f"{session_label(session)}:{req}".encode()
            if counts[cmd] != 1:
                raise Violation(f"exactly once: acknowledged {cmd!r} applied {counts[cmd]} times")
        dup = [c for c, k in counts.items() if k > 1]
        if dup:
            raise Violation(f"exactly once: {dup[0]!r} applied {counts[dup[0]]} times")

    def status_line(self) -> str:
        parts = []
        for n in self.nodes.values():
            if not n.alive:
                parts.append(f"{n.id}:down")
                continue
            r = n.raft
            parts.append(
                f"{n.id}:{r.role.value[0]}t{r.term} c{r.log.committed}/l{r.log.last_index()}"
                f" a{n.sm.applied_index}"
            )
        pending = sum(1 for c in self.clients if c.outstanding is not None)
        return " ".join(parts) + f" pending_clients={pending}"


def run_simulation(config: SimConfig) -> SimResult:
    """Run one seeded simulation; never raises for a protocol violation."""
    cluster = SimCluster(config)
    error: str | None = None
    try:
        cluster.run()
    except Violation as exc:
        error = str(exc)
    except Exception as exc:  # a crash or failed assertion inside the core is a bug too
        error = "".join(traceback.format_exception(exc, limit=-6)).rstrip()
    stats = dict(cluster.stats)
    stats.update(
        now=cluster.now,
        messages=cluster.network.stats.sent,
        checks=cluster.checker.checks,
        committed=max((n.raft.log.committed for n in cluster.nodes.values() if n.alive), default=0),
    )
    trace = cluster.trace.dump()
    if error is not None:
        trace += "\nstatus: " + cluster.status_line()
    return SimResult(config.seed, cluster.now, error is None, error, trace, stats)

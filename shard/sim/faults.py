"""Random faults for the simulator: crashes, partitions, transfers, compaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shard.raft import RaftError

if TYPE_CHECKING:
    from shard.sim.cluster import SimCluster


class FaultInjector:
    def __init__(self, cluster: SimCluster) -> None:
        self.cl = cluster
        self.heal_at: int | None = None
        self._retired: set[str] = set()

    def retired(self, node: str) -> bool:
        return node in self._retired

    def inject(self) -> None:
        cl, cfg, rng = self.cl, self.cl.config, self.cl.rng
        if rng.random() < cfg.crash_rate:
            self._crash()
        if self.heal_at is not None and cl.now >= self.heal_at:
            cl.network.heal()
            self.heal_at = None
            cl.trace.log("network healed")
        elif self.heal_at is None and rng.random() < cfg.partition_rate:
            self._partition()
        if rng.random() < cfg.membership_rate:
            cl.change_membership()
            self._retire_removed()
        if rng.random() < cfg.transfer_rate:
            self._transfer()
        if rng.random() < cfg.compact_rate * len(cl.nodes):
            self._compact()

    def restart_due(self) -> None:
        for node in self.cl.nodes.values():
            if not node.alive and node.id not in self._retired and self.cl.now >= node.restart_at:
                node.boot()
                self.cl.trace.log(
                    f"{node.id} restarts: term {node.raft.term}, log {node.raft.log.last_index()},"
                    f" commit {node.raft.log.committed}"
                )

    def _crash(self) -> None:
        cl, rng = self.cl, self.cl.rng
        alive = [n for n in cl.nodes.values() if n.alive]
        down = len(cl.nodes) - len(alive) - len(self._retired)
        if not alive or down >= (len(cl.nodes) - len(self._retired) + 1) // 2:
            return
        leader = cl.leader()
        node = leader if leader and rng.random() < cl.config.leader_bias else rng.choice(alive)
        what = node.crash()
        node.restart_at = cl.now + rng.randint(5, 80)
        cl.stats["crashes"] += 1
        cl.trace.log(f"{node.id} crashes ({what}); restarts at t={node.restart_at}")

    def _partition(self) -> None:
        cl, rng = self.cl, self.cl.rng
        ids = sorted(n for n in cl.nodes if n not in self._retired)
        leader = cl.leader()
        kind = rng.choice(("isolate", "split", "one_way"))
        if rng.random() < cl.config.leader_bias:
            kind = "isolate_leader"
        if kind == "isolate_leader" and leader is not None:
            cl.network.isolate(leader.id, ids)
            what = f"leader {leader.id} isolated"
        elif kind == "split":
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            cl.network.partition(ids[:cut], ids[cut:])
            what = f"split {sorted(ids[:cut])} | {sorted(ids[cut:])}"
        elif kind == "one_way":
            a, b = rng.sample(ids, 2)
            cl.network.block(a, b)
            what = f"one-way cut {a} -> {b}"
        else:
            victim = rng.choice(ids)
            cl.network.isolate(victim, ids)
            what = f"{victim} isolated"
        self.heal_at = cl.now + rng.randint(10, 120)
        cl.stats["partitions"] += 1
        cl.trace.log(f"partition: {what} until t={self.heal_at}")

    def _transfer(self) -> None:
        cl = self.cl
        leader = cl.leader()
        if leader is None:
            return
        others = [v for v in leader.raft.membership.voters if v != leader.id]
        if not others:
            return
        target = cl.rng.choice(others)
        try:
            leader.raft.transfer_leader(target)
        except RaftError as exc:
            cl.trace.log(f"transfer to {target} refused: {exc}")
            return
        cl.stats["transfers"] += 1
        cl.trace.log(f"{leader.id} transfers leadership to {target}")

    def _compact(self) -> None:
        cl = self.cl
        node = cl.rng.choice(sorted(cl.nodes))
        n = cl.nodes[node]
        if not n.alive or n.ready is not None:
            return
        floor = n.raft.snapshot.meta.index if n.raft.snapshot else 0
        if n.sm.applied_index - floor >= 3:
            n.take_snapshot(retain=cl.rng.randrange(0, 4))
            cl.stats["snapshots"] += 1

    def _retire_removed(self) -> None:
        """Shut down nodes whose removal the leader has committed."""
        cl = self.cl
        leader = cl.leader()
        if leader is None:
            return
        r = leader.raft
        if r.membership_change_pending():
            return  # the latest change is not committed yet
        members = set(r.membership.all_nodes())
        for node in sorted(cl.nodes):
            if node not in members and node not in self._retired and node != leader.id:
                known = any(node == n for n in r.progress)
                if not known:
                    self._retired.add(node)
                    cl.nodes[node].crash()
                    cl.trace.log(f"{node} retired (removed from the group)")

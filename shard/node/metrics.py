"""Prometheus metrics of one replica, in a registry of its own.

One registry per replica (not the process-wide default) so that tests can
run several replicas in one process. ``serve`` exposes it over HTTP from
prometheus-client's own daemon thread (see shard.observability).
"""

from __future__ import annotations

import prometheus_client as prom

from config.load import parse_address
from shard.node.gctuning import frozen_objects

ROLES = ("follower", "pre_candidate", "candidate", "leader", "learner")


class NodeMetrics:
    """The gauges, counters and histograms a replica updates."""

    def __init__(self, node: str, market: str) -> None:
        self.registry = prom.CollectorRegistry(auto_describe=True)
        labels = {"node": node, "market": market}
        r = self.registry

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> prom.Gauge:
            return prom.Gauge(name, doc, [*labels, *extra], registry=r)

        self.role = gauge("clob_raft_role", "1 for the replica's current role", ("role",))
        self.term = gauge("clob_raft_term", "Current Raft term").labels(**labels)
        self.commit_index = gauge("clob_raft_commit_index", "Highest committed log index").labels(
            **labels
        )
        self.applied_index = gauge("clob_raft_applied_index", "Highest applied log index").labels(
            **labels
        )
        self.applied_seq = gauge("clob_applied_seq", "Commands applied (command seq)").labels(
            **labels
        )
        self.lag = gauge(
            "clob_raft_follower_lag_entries",
            "Leader only: entries a follower is behind the leader's last index",
            ("follower",),
        )
        self.snapshot_bytes = gauge("clob_snapshot_bytes", "Size of the latest snapshot").labels(
            **labels
        )
        self.diverged = gauge("clob_diverged", "1 if this replica's digest disagreed").labels(
            **labels
        )
        self.fsync_seconds = prom.Histogram(
            "clob_fsync_seconds",
            "Time to make one batch durable (write + fsync)",
            list(labels),
            buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.5, 1.0),
            registry=r,
        ).labels(**labels)
        self.commands_applied = prom.Counter(
            "clob_commands_applied",
            "Commands applied by the state machine",
            list(labels),
            registry=r,
        ).labels(**labels)
        self.entries_proposed = prom.Counter(
            "clob_entries_proposed",
            "Log entries proposed (each a batch of commands)",
            list(labels),
            registry=r,
        ).labels(**labels)
        self.frozen_objects = gauge(
            "clob_gc_frozen_objects",
            "Objects the garbage collector no longer walks (see shard.node.gctuning)",
        ).labels(**labels)
        self.frozen_objects.set_function(lambda: float(frozen_objects()))
        self._labels = labels
        self._role_children = {role: self.role.labels(**labels, role=role) for role in ROLES}
        self._followers: set[str] = set()

    def set_role(self, role: str) -> None:
        for name, child in self._role_children.items():
            child.set(1 if name == role else 0)

    def refresh(
        self, role: str, term: int, commit: int, applied: int, seq: int, lag: dict[str, int]
    ) -> None:
        """Set every gauge that follows the replica's progress."""
        self.set_role(role)
        self.term.set(term)
        self.commit_index.set(commit)
        self.applied_index.set(applied)
        self.applied_seq.set(seq)
        self.set_lag(lag)

    def set_lag(self, lag: dict[str, int]) -> None:
        for follower in self._followers - lag.keys():
            self.lag.remove(*self._labels.values(), follower)
        for follower, behind in lag.items():
            self.lag.labels(**self._labels, follower=follower).set(behind)
        self._followers = set(lag)

    def serve(self, address: str) -> None:
        host, port = parse_address(address)
        prom.start_http_server(port, addr=host, registry=self.registry)

    def render(self) -> bytes:
        return prom.generate_latest(self.registry)

"""Simulated clients: one outstanding command each, retried through sessions.

A client first registers (a proposal with request number 0) and uses the
session id the group assigns. It sends its command to the node it believes
is the leader; if no answer arrives within its timeout it retries the
*same* request number, possibly through another node, so the session table
must make the retry harmless. ``ack_below`` tells the group which results it
may forget. A client whose session was evicted registers again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shard.proposals import Proposal
from shard.raft import NotLeader
from shard.sessions import REGISTER, Verdict
from shard.statemachine import Outcome

if TYPE_CHECKING:
    from shard.sim.cluster import SimCluster
    from shard.sim.node import SimNode


class SimClient:
    def __init__(self, client_id: str, cluster: SimCluster) -> None:
        self.id = client_id
        self.cluster = cluster
        self.next_request = 1
        self.session: str | None = None  # assigned by the group on registration
        self.outstanding: Proposal | None = None
        self.sent_at = 0
        self.target: str | None = None
        self.acked = 0
        self.retries = 0

    def act(self, now: int, *, new_requests: bool = True) -> None:
        cl = self.cluster
        if self.outstanding is None:
            restart = cl.config.client_restart_rate
            if restart and self.session is not None and cl.rng.random() < restart:
                self.session = None  # a restarted client: its old session is abandoned
            if new_requests and cl.rng.random() < cl.config.request_rate:
                if self.session is None:
                    self.outstanding = Proposal(self.id, REGISTER, 0, b"")
                else:
                    req = self.next_request
                    self.next_request += 1
                    command = cl.make_command(self.id, req)
                    self.outstanding = Proposal(self.session, req, req, command)
                self._send(now)
        elif now - self.sent_at >= cl.config.client_timeout:
            self.retries += 1
            self._send(now)

    def _send(self, now: int) -> None:
        cl = self.cluster
        p = self.outstanding
        assert p is not None
        self.sent_at = now
        if self.target is None or self.target not in cl.nodes:
            self.target = cl.rng.choice(sorted(cl.nodes))
        node = cl.nodes[self.target]
        if not node.alive:
            self.target = None
            return
        try:
            node.accept(p, self)
        except NotLeader as exc:
            self.target = exc.leader
            self.sent_at = now - cl.config.client_timeout + 2  # retry soon at the hint

    def on_ack(self, node: SimNode, out: Outcome) -> None:
        p = self.outstanding
        self.cluster.checker.on_ack(out.client_id, out.request_no, out.seq, out.result)
        if p is None or out.request_no != p.request_no:
            return  # a late duplicate answer to a request already acknowledged
        self.cluster.on_acked(self.id, out)
        self.outstanding = None
        self.acked += 1
        self.target = node.id

    def on_registered(self, node: SimNode, out: Outcome) -> None:
        p = self.outstanding
        if p is None or p.request_no != REGISTER or self.session is not None:
            return  # a late answer to a registration retried and answered before
        self.session = out.result
        self.outstanding = None
        self.target = node.id
        self.cluster.trace.log(f"{self.id} registered as {self.session}")

    def on_expired(self, out: Outcome) -> None:
        """The group no longer knows this client's session (or forgot the request):
        give the request up; an unknown session means registering again."""
        p = self.outstanding
        if out.verdict is Verdict.NO_SESSION and out.client_id == self.session:
            self.session = None
        if p is not None and out.request_no == p.request_no:
            self.cluster.stats["expired"] += 1
            self.cluster.trace.log(f"{self.id} req {p.request_no} refused: session expired")
            self.outstanding = None

"""Why the core refused a request from its owner."""

from __future__ import annotations


class RaftError(Exception):
    """Base class of refusals; the core's state is unchanged when one is raised."""


class NotLeader(RaftError):
    """Only the leader accepts this; ``leader`` is the known leader, if any."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader})")
        self.leader = leader


class ProposalDropped(RaftError):
    """The leader cannot take the proposal now (transfer, pending change, backlog)."""

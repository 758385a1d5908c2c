"""Single-server membership changes (thesis ch. 4) and their log encoding.

A change is proposed as a CONFIG entry holding the *whole* new membership and
takes effect on each node as soon as the entry is in its log (committed or
not); if the entry is later truncated the node reverts to the previous
configuration. A new server joins as a non-voting learner, catches up, and is
then promoted, so adding it never leaves the group short of a quorum of
up-to-date voters (thesis §4.2.1).
"""

from __future__ import annotations

import enum

import attrs
import msgpack

from shard.records import Membership


class ChangeKind(enum.Enum):
    ADD_LEARNER = "add_learner"
    PROMOTE = "promote"
    REMOVE = "remove"


@attrs.frozen
class MembershipChange:
    kind: ChangeKind
    node: str


class InvalidChange(ValueError):
    """The change makes no sense for the current membership."""


def apply_change(current: Membership, change: MembershipChange) -> Membership:
    """The membership after ``change``; raises :class:`InvalidChange` if it is not valid."""
    voters, learners, node = current.voters, current.learners, change.node
    if change.kind is ChangeKind.ADD_LEARNER:
        if node in voters or node in learners:
            raise InvalidChange(f"{node} is already a member")
        return Membership(voters, (*learners, node))
    if change.kind is ChangeKind.PROMOTE:
        if node not in learners:
            raise InvalidChange(f"{node} is not a learner")
        return Membership((*voters, node), tuple(x for x in learners if x != node))
    if node in voters:
        if len(voters) == 1:
            raise InvalidChange("cannot remove the last voter")
        return Membership(tuple(x for x in voters if x != node), learners)
    if node in learners:
        return Membership(voters, tuple(x for x in learners if x != node))
    raise InvalidChange(f"{node} is not a member")


def encode_membership(m: Membership) -> bytes:
    return msgpack.packb([list(m.voters), list(m.learners)])  # type: ignore[no-any-return]


def decode_membership(data: bytes) -> Membership:
    voters, learners = msgpack.unpackb(data)
    return Membership(tuple(voters), tuple(learners))

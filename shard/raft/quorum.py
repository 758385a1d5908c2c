"""Majority arithmetic over a set of voters."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Iterable[str], match: Mapping[str, int]) -> int:
    """The highest index stored by a majority of ``voters`` (0 if there are none)."""
    values = sorted((match.get(v, 0) for v in voters), reverse=True)
    if not values:
        return 0
    return values[majority(len(values)) - 1]


def vote_result(voters: Iterable[str], votes: Mapping[str, bool]) -> VoteResult:
    """Outcome of an election given the answers received so far."""
    members = list(voters)
    need = majority(len(members))
    yes = sum(1 for v in members if votes.get(v) is True)
    no = sum(1 for v in members if votes.get(v) is False)
    if yes >= need:
        return VoteResult.WON
    if no > len(members) - need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Iterable[str], acks: Iterable[str]) -> bool:
    members = set(voters)
    return len(members & set(acks)) >= majority(len(members))

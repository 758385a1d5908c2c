"""Replica-group membership as the chaos harness tracks it (pure: no I/O, no clock).

The ``replace_follower`` fault starts a spare replica, adds it to a market's
group (learner, then voter) and removes a follower. Between faults the
harness must know which replicas are *members* (in the group's committed
membership, voters or learners: their processes must run, faults pick their
targets among them, the end-of-run checks read and restart them) and which
were *retired* (removed, or a spare that never joined: stopped for good;
their data directories are read offline only, as a prefix of the log).

The group itself is the authority: :func:`parse_view` reads a leader's
status reply, :func:`stable_view` decides when its membership is known to
be committed, and :func:`reconcile` turns it into processes to start and stop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

REPLACE_KIND = "replace_follower"


class _Planned(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def market(self) -> str: ...


def spares_needed(plan: Iterable[_Planned]) -> dict[str, int]:
    """market -> spare replicas its planned replacements use (a fresh name each time:
    a removed replica's name is never reused, so no vote it cast can be forgotten)."""
    return dict(Counter(f.market for f in plan if f.kind == REPLACE_KIND))


@attrs.frozen
class GroupView:
    """One replica's status as its market's leader sees the group."""

    leader: str
    term: int
    commit_index: int
    last_index: int
    voters: tuple[str, ...]
    learners: tuple[str, ...]

    @property
    def members(self) -> tuple[str, ...]:
        return self.voters + self.learners


def parse_view(reply: Mapping[str, Any]) -> GroupView | None:
    """The group view in a leader's ``status`` reply; None when it is not a leader's."""
    if reply.get("t") != "status" or reply.get("role") != "leader":
        return None
    return GroupView(
        leader=str(reply["name"]),
        term=int(reply["term"]),
        commit_index=int(reply["commit_index"]),
        last_index=int(reply["last_index"]),
        voters=tuple(str(n) for n in reply.get("voters", ())),
        learners=tuple(str(n) for n in reply.get("learners", ())),
    )


def newest_leader(views: Iterable[GroupView | None]) -> GroupView | None:
    """The leader view with the highest term (an old leader may not know it was deposed)."""
    found = [v for v in views if v is not None]
    return max(found, key=lambda v: v.term) if found else None


def stable_view(first: GroupView | None, later: GroupView | None) -> bool:
    """Whether ``later`` proves ``first``'s membership committed.

    A membership takes effect as soon as its CONFIG entry is in a log,
    committed or not. When the same leader, in the same term, has since
    committed everything that was in its log at ``first`` (and the
    membership is unchanged), that membership is committed: no election can
    take it back.
    """
    return (
        first is not None
        and later is not None
        and (later.leader, later.term) == (first.leader, first.term)
        and later.commit_index >= first.last_index
        and (later.voters, later.learners) == (first.voters, first.learners)
    )


def pick_removal(
    voters: Sequence[str], leader: str | None, keep: Iterable[str], choice: int
) -> str | None:
    """The follower to remove: a voter other than the leader and ``keep`` (the new replica).

    None when there is none, or when removing one would leave fewer than three voters
    (the new replica must have become a voter first).
    """
    kept = set(keep)
    candidates = [v for v in voters if v != leader and v not in kept]
    if len(voters) <= 3 or not candidates:
        return None
    return candidates[choice % len(candidates)]


def change_toward(view: GroupView, node: str, want: str) -> str | None:
    """The admin action that moves ``node`` one step towards ``want`` in ``view``'s group
    (``"voter"``: learner first, then promoted; ``"absent"``: removed); None once there.

    Each step is chosen from the group's state, not remembered, so a lost reply or a
    leader change in between (an uncommitted change may be truncated) is simply redone.
    """
    if want == "voter":
        if node in view.voters:
            return None
        return "promote_replica" if node in view.learners else "add_replica"
    assert want == "absent", want
    return "remove_replica" if node in view.members else None


@attrs.frozen
class Reconciliation:
    members: tuple[str, ...]  # the group's members, in configuration order
    start: tuple[str, ...]  # members whose process is not running
    stop: tuple[str, ...]  # running replicas that are no longer (or never became) members
    unknown: tuple[str, ...]  # members the harness does not know or had retired: a bug


def reconcile(
    view: GroupView,
    pool: Sequence[str],
    running: Iterable[str],
    retired: Iterable[str],
) -> Reconciliation:
    """What to do so the processes match the committed membership ``view``.

    ``pool``: every replica name of the market (configuration order);
    ``running``: those whose process runs; ``retired``: those stopped for good.
    """
    members = set(view.members)
    up = set(running)
    gone = set(retired)
    ordered = tuple(n for n in pool if n in members)
    return Reconciliation(
        members=ordered,
        start=tuple(n for n in ordered if n not in up and n not in gone),
        stop=tuple(n for n in pool if n in up and n not in members),
        unknown=tuple(sorted(n for n in members if n not in pool or n in gone)),
    )

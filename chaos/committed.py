"""What the checks compare: committed log entries, violations, and what a user may see.

Shared by :mod:`chaos.checker` and :mod:`chaos.stream_checks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from chaos.history import Event

_NAME_FIELDS = ("maker_user", "taker_user")


@attrs.frozen
class Violation:
    """A broken promise: its kind, the market, what was seen, and the operations involved."""

    kind: str
    market: str | None
    message: str
    op_ids: tuple[int, ...] = ()


@attrs.frozen
class CommittedEntry:
    """One applied command: its seq, its events and, when known, the command."""

    seq: int
    events: tuple[Event, ...]
    command: dict[str, Any] | None = None


@attrs.frozen
class EngineBase:
    """An engine state to replay from: its snapshot, taken right after applying ``seq``.

    A replica that compacted its log keeps the commands only after its
    snapshot; replaying them from the snapshot's state still checks every
    later command (``chaos.checker.check_replay``).
    """

    seq: int
    snapshot: bytes


@attrs.frozen
class CommittedLog:
    """A market's committed commands from ``first_seq`` to ``last_seq`` without a gap."""

    market: str
    entries: Mapping[int, CommittedEntry]
    first_seq: int = 1
    last_seq: int = 0
    base: EngineBase | None = None  # where replaying the commands may start, if not seq 1

    @classmethod
    def from_entries(
        cls, market: str, entries: Iterable[CommittedEntry], base: EngineBase | None = None
    ) -> CommittedLog:
        by_seq = {e.seq: e for e in entries}
        if not by_seq:
            return cls(market, {}, 1, 0, base)
        first = min(by_seq)
        last = first
        while last + 1 in by_seq:
            last += 1
        return cls(market, {s: e for s, e in by_seq.items() if s <= last}, first, last, base)

    def covers(self, seq: int) -> bool:
        return self.first_seq <= seq <= self.last_seq

    def has_commands(self) -> bool:
        return bool(self.entries) and all(e.command is not None for e in self.entries.values())

    def replay_range(self) -> tuple[int, int] | None:
        """The seqs ``(first, last)`` a replay can check: it starts where an engine state is
        known (seq 1: an empty engine; later: right after ``base``) and runs while the
        commands are known (a data directory's commit index may lag the live replicas)."""
        if self.covers(1) and self.entries[1].command is not None:
            first = 1
        elif self.base is not None and self.covers(self.base.seq + 1):
            first = self.base.seq + 1
        else:
            return None
        last = first - 1
        while last < self.last_seq and self.entries[last + 1].command is not None:
            last += 1
        return (first, last) if last >= first else None


def redact(events: Iterable[Event], user: str) -> list[Event]:
    """Events as ``user`` may see them: other users' names removed from fills."""
    out = []
    for event in events:
        shown = dict(event)
        for field in _NAME_FIELDS:
            if field in shown and shown[field] != user:
                del shown[field]
        out.append(shown)
    return out


def leaked_names(events: Iterable[Event], user: str) -> list[str]:
    """Other users' names that ``user`` was shown (PROTOCOL.md: fills hide them)."""
    return [
        str(event[field])
        for event in events
        for field in _NAME_FIELDS
        if event.get(field) not in (None, user)
    ]

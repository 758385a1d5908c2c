"""A simulated disk for one node: writes become durable only when synced.

The node writes a Ready's snapshot, entries and hard state (in that order),
later syncs, and only then sends that Ready's messages. A crash loses every
unsynced write; with some probability the unsynced writes were partly on the
platter, so a prefix of them survives, and the last entry batch of that
prefix may be torn (only a prefix of its entries survives, as a WAL with
checksums would recover it).
"""

from __future__ import annotations

import random

import attrs

from shard.raft import Snapshot
from shard.records import Entry, HardState


@attrs.define
class DiskState:
    hard_state: HardState = attrs.field(factory=HardState)
    entries: list[Entry] = attrs.field(factory=list)
    snapshot: Snapshot | None = None

    def write_entries(self, entries: tuple[Entry, ...]) -> None:
        if not entries:
            return
        first = entries[0].index
        while self.entries and self.entries[-1].index >= first:
            self.entries.pop()
        self.entries.extend(entries)

    def install_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.entries = []  # an installed snapshot replaces the whole log

    def log_after_snapshot(self) -> list[Entry]:
        floor = self.snapshot.meta.index if self.snapshot else 0
        return [e for e in self.entries if e.index > floor]


Write = tuple[str, object]


class SimDisk:
    def __init__(self) -> None:
        self.durable = DiskState()
        self.pending: list[Write] = []

    def write_ready(
        self, snapshot: Snapshot | None, entries: tuple[Entry, ...], hard: HardState | None
    ) -> None:
        if snapshot is not None:
            self.pending.append(("snapshot", snapshot))
        if entries:
            self.pending.append(("entries", entries))
        if hard is not None:
            self.pending.append(("hard", hard))

    def sync(self) -> None:
        for op in self.pending:
            self._apply(op, self.durable)
        self.pending = []

    def save_own_snapshot(self, snap: Snapshot) -> None:
        """A snapshot of our own state machine: written atomically and synced at once."""
        self.sync()
        self.durable.snapshot = snap

    def crash(self, rng: random.Random, torn: float) -> str:
        """Lose unsynced writes (maybe keeping a torn prefix); describes what happened."""
        lost = len(self.pending)
        if self.pending and rng.random() < torn:
            keep = rng.randrange(len(self.pending) + 1)
            for op in self.pending[:keep]:
                self._apply(op, self.durable)
            if keep < len(self.pending) and self.pending[keep][0] == "entries":
                entries = self.pending[keep][1]
                assert isinstance(entries, tuple)
                self.durable.write_entries(entries[: rng.randrange(len(entries))])
            self.pending = []
            return f"torn: kept {keep}/{lost} unsynced writes"
        self.pending = []
        return f"lost {lost} unsynced writes"

    @staticmethod
    def _apply(op: Write, state: DiskState) -> None:
        kind, value = op
        if kind == "snapshot":
            assert isinstance(value, Snapshot)
            state.install_snapshot(value)
        elif kind == "entries":
            assert isinstance(value, tuple)
            state.write_entries(value)
        else:
            assert isinstance(value, HardState)
            state.hard_state = value

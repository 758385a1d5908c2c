"""The Raft log as the core sees it: a snapshot offset, then entries in memory.

Indices ``first_index()..last_index()`` are held in memory; everything at or
below ``snap_index`` has been compacted into a snapshot (only its last term is
kept, for the consistency check of the next AppendEntries). Entries above
``stable`` are *unstable*: appended in memory but not yet reported durable by
the owner; they are what the next :class:`~shard.raft.ready.Ready` asks the
owner to persist.
"""

from __future__ import annotations

from collections.abc import Sequence

from shard.records import Entry


class RaftLog:
    """In-memory log with compaction offset, unstable tail, commit and apply marks."""

    def __init__(self, snap_index: int = 0, snap_term: int = 0) -> None:
        self.snap_index = snap_index
        self.snap_term = snap_term
        self.entries: list[Entry] = []
        self.stable = snap_index  # highest index known durable on the owner's disk
        self.committed = snap_index
        self.applied = snap_index  # highest index handed to the owner for applying

    # -- queries ---------------------------------------------------------

    def first_index(self) -> int:
        return self.snap_index + 1

    def last_index(self) -> int:
        return self.snap_index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snap_term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or beyond the end."""
        if index == self.snap_index:
            return self.snap_term
        if index < self.snap_index or index > self.last_index():
            return None
        return self.entries[index - self.snap_index - 1].term

    def entry(self, index: int) -> Entry:
        assert self.snap_index < index <= self.last_index(), (index, self.snap_index)
        return self.entries[index - self.snap_index - 1]

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate with this last entry is at least as up to date (§5.4.1)."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, *, max_count: int, max_bytes: int) -> tuple[Entry, ...]:
        """Entries ``lo..hi`` inclusive, capped by count and bytes (always at least one)."""
        assert lo > self.snap_index, (lo, self.snap_index)
        hi = min(hi, self.last_index(), lo + max_count - 1)
        out: list[Entry] = []
        size = 0
        for i in range(lo, hi + 1):
            e = self.entries[i - self.snap_index - 1]
            size += len(e.data) + 16
            if out and size > max_bytes:
                break
            out.append(e)
        return tuple(out)

    def unstable(self) -> tuple[Entry, ...]:
        return tuple(self.entries[self.stable - self.snap_index :])

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term`` (fast backtracking).

        Stops at the snapshot index: nothing below it can be inspected.
        """
        index = min(index, self.last_index())
        while index > self.snap_index:
            t = self.term(index)
            assert t is not None
            if t <= term:
                return index
            index -= 1
        return index

    # -- mutations -------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that directly follow the current last index."""
        if not entries:
            return
        assert entries[0].index == self.last_index() + 1, (entries[0].index, self.last_index())
        self.entries.extend(entries)

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        """Replace everything from ``entries[0].index`` on; never below the commit index."""
        first = entries[0].index
        assert first > self.committed, f"truncating committed entry {first} <= {self.committed}"
        assert first > self.snap_index
        del self.entries[first - self.snap_index - 1 :]
        self.stable = min(self.stable, first - 1)
        self.entries.extend(entries)

    def maybe_append(self, prev_index: int, prev_term: int, entries: Sequence[Entry]) -> int | None:
        """Follower side of AppendEntries; returns the last new matching index or None.

        Entries already present with the same term are kept (a duplicated or
        reordered message must not truncate anything, §5.3); the first
        conflicting entry and everything after it is replaced.
        """
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        for pos, e in enumerate(entries):
            if e.index <= self.snap_index:
                continue  # already covered by our snapshot, hence committed and equal
            t = self.term(e.index)
            if t == e.term:
                continue
            self.truncate_and_append(entries[pos:])
            break
        return last_new

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            assert index <= self.last_index(), (index, self.last_index())
            self.committed = index
            return True
        return False

    def stable_to(self, index: int, term: int) -> None:
        """The owner made entries up to ``(index, term)`` durable."""
        if index > self.stable and self.match_term(index, term):
            self.stable = index

    def compact(self, index: int) -> None:
        """Drop entries up to ``index`` (the owner holds a snapshot covering them)."""
        if index <= self.snap_index:
            return
        assert index <= self.applied and index <= self.stable, (index, self.applied, self.stable)
        term = self.term(index)
        assert term is not None
        del self.entries[: index - self.snap_index]
        self.snap_index = index
        self.snap_term = term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log with a snapshot ending at ``(index, term)``."""
        self.entries = []
        self.snap_index = index
        self.snap_term = term
        self.stable = index
        self.committed = index
        self.applied = index

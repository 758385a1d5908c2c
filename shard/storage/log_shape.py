"""Which log indexes the WAL holds, and their terms: the rules replay and runtime share.

The log is a base ``(index, term)`` -- the last entry a snapshot covers, or
``(0, 0)`` for a fresh log -- followed by contiguous entries. The writer and
recovery both apply these operations, so a recovered log has the same shape
the writer had:

* append at ``last + 1``;
* truncate from ``i`` (a conflicting suffix is replaced);
* compact to ``(i, t)``: if the log holds ``i`` with term ``t`` the entries
  after it stay, otherwise the whole log is discarded (an installed snapshot
  replaces a log that does not match it; etcd-io/raft's ``restore`` and the
  Raft thesis §5.4.4 / InstallSnapshot rule 6-7).

A WAL whose first segments were deleted by compaction starts in the middle;
replay then begins with an *unknown* base (``base_term is None``) until the
compaction record in a later segment fixes it.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from shard.records import Entry


class LogGap(ValueError):
    """An operation that would leave a hole in the log."""


class LogShape:
    """Base index and term plus the terms of the entries after it.

    With ``keep_entries`` the entries themselves are kept too (recovery);
    the runtime writer keeps only terms, 8 bytes per entry.
    """

    def __init__(self, *, base_known: bool = True, keep_entries: bool = False) -> None:
        self.base_index = 0
        self.base_term: int | None = 0 if base_known else None
        self.terms = array("Q")
        self.entries: list[Entry] | None = [] if keep_entries else None

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.terms)

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index`` (the base included), None if not held."""
        if index == self.base_index:
            return self.base_term
        if self.base_index < index <= self.last_index:
            return self.terms[index - self.base_index - 1]
        return None

    def append(self, index: int, term: int, entry: Entry | None = None) -> None:
        if index != self.last_index + 1:
            if self.base_term is not None or self.terms:
                raise LogGap(f"entry {index} does not follow the last index {self.last_index}")
            self.base_index = index - 1  # a log whose start was compacted away
        self.terms.append(term)
        if self.entries is not None:
            assert entry is not None
            self.entries.append(entry)

    def extend(self, terms: Iterable[int]) -> None:
        """Append the terms of entries known to follow the last index contiguously."""
        self.terms.extend(terms)

    def truncate(self, index: int) -> None:
        """Drop the entries with index >= ``index``.

        Dropping into the base leaves an empty log with an unknown base; only
        replay of a log that starts in the middle may need that.
        """
        if index > self.last_index:
            return
        if index <= self.base_index:
            self._reset(index - 1, None)
            return
        keep = index - self.base_index - 1
        del self.terms[keep:]
        if self.entries is not None:
            del self.entries[keep:]

    def compact(self, index: int, term: int) -> None:
        """Make ``(index, term)`` the base, keeping the suffix only if it matches."""
        if index < self.base_index or (index == self.base_index and term == self.base_term):
            return
        if index == self.base_index and self.base_term is None:
            self.base_term = term  # replay of a log whose start was deleted: now known
            return
        if index > self.base_index and self.term_at(index) == term:
            drop = index - self.base_index
            del self.terms[:drop]
            if self.entries is not None:
                del self.entries[:drop]
            self.base_index, self.base_term = index, term
            return
        self._reset(index, term)

    def _reset(self, base_index: int, base_term: int | None) -> None:
        self.base_index, self.base_term = base_index, base_term
        self.terms = array("Q")
        if self.entries is not None:
            self.entries = []

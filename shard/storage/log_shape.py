"""Which log indexes the WAL holds, and their terms: the rules replay and the writer share.

The log is a base ``(index, term)`` -- the last entry a snapshot covers, or
``(0, 0)`` for a fresh log -- followed by contiguous entries. The writer and
recovery apply the same operations, so a recovered log has the shape the
writer had:

* append at ``last + 1``;
* truncate from ``i`` (a conflicting suffix is replaced);
* compact to ``(i, t)``: if the log holds ``i`` with term ``t`` the entries
  after it stay, otherwise the whole log is discarded (a snapshot installed
  from the leader replaces a log that does not match it: etcd-io/raft's
  ``restore``, the Raft paper's InstallSnapshot rules 6-7). The writer
  decides and records the decision, so replay never needs the term of an
  entry that compaction deleted.

Replay of a WAL whose first segments were deleted starts *tentative*: the
records it sees first may refer to entries in the deleted segments, all at
or below a later compaction point. A gap then means "the entries in between
were deleted" and restarts the known run there. The first compaction record
whose point the known run covers (or that discards the log) makes the shape
*definitive*; from then on any gap is corruption. A log still tentative when
replay ends is accepted only if its base came from a compaction record with
nothing missing after it (``anchored``): the writer deletes a segment only
once a durable compaction record covers all its entries. Otherwise the log is
missing its start.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from shard.records import Entry


class LogGap(ValueError):
    """An operation that would leave a hole in the log or rewrite compacted entries."""


class LogShape:
    """Base index and term plus the terms of the entries after it.

    With ``keep_entries`` the entries themselves are kept too (recovery);
    the writer keeps only terms, 8 bytes per entry.
    """

    def __init__(self, *, definitive: bool = True, keep_entries: bool = False) -> None:
        self.base_index = 0
        self.base_term = 0
        self.definitive = definitive
        self.anchored = False  # tentative, but the base comes from a compaction record
        self.terms = array("Q")
        self.entries: list[Entry] | None = [] if keep_entries else None

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.terms)

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index`` (the base included), None if not held."""
        if index == self.base_index and self.definitive:
            return self.base_term
        if self.base_index < index <= self.last_index:
            return self.terms[index - self.base_index - 1]
        return None

    def append(self, index: int, term: int, entry: Entry | None = None) -> None:
        """Append one entry (replay): it must follow the last index."""
        if index != self.last_index + 1:
            if self.definitive or index <= self.last_index:
                raise LogGap(f"entry {index} does not follow the last index {self.last_index}")
            self._reset(index - 1, 0, definitive=False)  # the entries between were deleted
        self.terms.append(term)
        if self.entries is not None:
            assert entry is not None
            self.entries.append(entry)

    def extend(self, terms: Iterable[int]) -> None:
        """Append the terms of entries known to follow the last index contiguously."""
        self.terms.extend(terms)

    def truncate(self, index: int) -> None:
        """Drop the entries with index >= ``index``."""
        if index > self.last_index:
            return
        if index <= self.base_index:
            if self.definitive:
                raise LogGap(f"truncate at {index} reaches into the base {self.base_index}")
            self._reset(index - 1, 0, definitive=False)
            return
        keep = index - self.base_index - 1
        del self.terms[keep:]
        if self.entries is not None:
            del self.entries[keep:]

    def compact(self, index: int, term: int, keep_suffix: bool | None = None) -> bool:
        """Make ``(index, term)`` the base; return whether the entries after it were kept.

        The writer passes ``keep_suffix=None`` (the entries stay if the log
        holds ``(index, term)``) or False; replay passes the recorded decision.
        """
        if self.definitive and index <= self.base_index:
            raise LogGap(f"compaction to {index} is not past the base {self.base_index}")
        if keep_suffix is None:
            keep_suffix = self.term_at(index) == term
        if not keep_suffix:
            self._reset(index, term, definitive=True)
            return False
        if self.base_index <= index <= self.last_index:
            drop = index - self.base_index
            del self.terms[:drop]
            if self.entries is not None:
                del self.entries[:drop]
            self.base_index, self.base_term, self.definitive = index, term, True
            return True
        if self.definitive:
            raise LogGap(f"compaction to {index} keeps a suffix the log does not reach")
        if index > self.last_index:
            self._reset(index, term, definitive=False)
            self.anchored = True
        return True

    def _reset(self, base_index: int, base_term: int, *, definitive: bool) -> None:
        self.base_index, self.base_term, self.definitive = base_index, base_term, definitive
        self.anchored = False
        self.terms = array("Q")
        if self.entries is not None:
            self.entries = []

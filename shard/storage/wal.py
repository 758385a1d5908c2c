"""The write-ahead log: Raft entries, hard state and log markers in segment files.

Writes are buffered in memory: :meth:`WriteAheadLog.append`,
:meth:`~WriteAheadLog.set_hard_state` and :meth:`~WriteAheadLog.compact` only
encode records. :meth:`~WriteAheadLog.sync` writes everything buffered with
one ``write`` and makes it durable with one ``fsync`` (group commit), so its
cost is shared by every record appended since the previous sync. ``sync`` is
plain blocking I/O: a trio runtime calls it with ``trio.to_thread.run_sync``
and must not call any other method of the same WAL while it runs.

Recovery (:meth:`WriteAheadLog.open`) replays every segment. A damaged record
(incomplete, or failing a checksum) is a *torn tail* when it is in the last
segment and no valid record follows it: a crash interrupted the last,
unsynced write, so it is cut off. Damage followed by any valid record, or in
a segment that is not the last (segments are fully fsynced before the next is
created), is corruption, and opening fails with :class:`StorageCorrupt`
naming the file and offset. A corrupt record is never returned.

After a failed write or fsync (``ENOSPC`` raises :class:`StorageFull`) the WAL
refuses all further calls: the buffered records are lost and the file tail is
unknown, so the node must stop acknowledging and restart, and recovery then
returns the valid prefix.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from shard.observability import get_logger
from shard.records import Entry, HardState
from shard.storage import segments
from shard.storage.durability import Durability, fsync_directory, write_all
from shard.storage.errors import StorageCorrupt, StorageError, storage_error
from shard.storage.log_shape import LogGap, LogShape
from shard.storage.wal_records import (
    COMPACT_DISCARD,
    COMPACT_KEEP,
    RecordType,
    decode_entry,
    decode_hard_state,
    encode,
    encode_entries,
    encode_hard_state,
    scan,
)

log = get_logger("shard.storage.wal")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_ENTRY, _HARD_STATE, _TRUNCATE = RecordType.ENTRY, RecordType.HARD_STATE, RecordType.TRUNCATE


@attrs.frozen
class WalStatistics:
    appended_records: int  # records encoded since open (entries, hard states, markers)
    appended_entries: int
    appended_bytes: int
    syncs: int  # sync() calls that had something to write
    fsyncs: int  # os.fsync calls on segment files
    last_sync_seconds: float
    total_sync_seconds: float
    pending_bytes: int  # buffered, not yet written
    segments: int
    first_index: int  # first entry the WAL holds (last_index + 1 when empty)
    last_index: int


@attrs.frozen
class WalRecovery:
    """What the WAL held on open: the log base, the entries after it, the hard state."""

    base_index: int
    base_term: int
    entries: list[Entry]
    hard_state: HardState | None


@attrs.define
class _Segment:
    seq: int
    path: Path
    max_entry_index: int  # highest entry index ever written to it (0 if none)


class WriteAheadLog:
    """A segmented, checksummed log with group commit. Create it with :meth:`open`."""

    def __init__(
        self,
        directory: Path,
        durability: Durability,
        segment_bytes: int,
        shape: LogShape,
        hard_state: HardState | None,
        segment_list: list[_Segment],
        fd: int,
        active_size: int,
    ) -> None:
        self._dir = directory
        self._durability = durability
        self._segment_bytes = segment_bytes
        self._shape = shape
        self._hard_state = hard_state
        self._segments = segment_list
        self._fd = fd
        self._active_size = active_size
        self._pending = bytearray()
        self._pending_max_entry = 0
        self._compacted = False  # a COMPACT record is buffered
        self._failed: StorageError | None = None
        self._closed = False
        self._records = self._entries = self._bytes = 0
        self._syncs = self._fsyncs = 0
        self._last_sync = self._total_sync = 0.0

    # -- opening and recovery -------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        durability: Durability = Durability.FSYNC,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> tuple[WriteAheadLog, WalRecovery]:
        """Open (or create) the WAL in ``directory`` and recover its contents.

        Cuts off a torn tail; raises :class:`StorageCorrupt` for damage
        anywhere else.
        """
        found = segments.list_segments(directory)
        if not found:
            fd = segments.create_segment(directory, 1, durability)
            seg = _Segment(1, segments.segment_path(directory, 1), 0)
            wal = cls(
                directory,
                durability,
                segment_bytes,
                LogShape(),
                None,
                [seg],
                fd,
                segments.HEADER_SIZE,
            )
            return wal, WalRecovery(0, 0, [], None)
        shape = LogShape(definitive=found[0][0] == 1, keep_entries=True)
        hard_state: HardState | None = None
        segment_list: list[_Segment] = []
        for position, (seq, path) in enumerate(found):
            last = position == len(found) - 1
            if position and seq != found[position - 1][0] + 1:
                raise StorageCorrupt(path, 0, f"segment {found[position - 1][0] + 1} is missing")
            max_entry, hs = _replay_segment(path, seq, shape, last, durability)
            hard_state = hs if hs is not None else hard_state
            segment_list.append(_Segment(seq, path, max_entry))
        if not (shape.definitive or shape.anchored):
            raise StorageCorrupt(found[0][1], 0, "log starts mid-way without a compaction record")
        shape.definitive = True
        entries = shape.entries
        assert entries is not None
        shape.entries = None  # the writer keeps terms only
        active = segment_list[-1]
        if durability is Durability.FSYNC:
            # A previous run in mode "none" may have left them in the page cache only.
            for seg in segment_list:
                _fsync_path(seg.path)
        fd = segments.open_segment(directory, active.seq)
        size = active.path.stat().st_size
        wal = cls(directory, durability, segment_bytes, shape, hard_state, segment_list, fd, size)
        log.info(
            "wal recovered",
            directory=str(directory),
            segments=len(segment_list),
            base_index=shape.base_index,
            last_index=shape.last_index,
        )
        return wal, WalRecovery(shape.base_index, shape.base_term, entries, hard_state)

    # -- buffering --------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self._shape.last_index

    @property
    def base_index(self) -> int:
        return self._shape.base_index

    def append(self, entries: Sequence[Entry]) -> None:
        """Buffer ``entries`` (contiguous); any held suffix from the first index on is replaced.

        The first index must be after the compacted base and at most
        ``last_index + 1``. Not durable until :meth:`sync`.
        """
        self._check_usable()
        if not entries:
            return
        shape = self._shape
        first = entries[0].index
        last = shape.last_index
        if not shape.base_index < first <= last + 1:
            raise ValueError(f"append at {first}: the log holds ({shape.base_index}, {last}]")
        out = self._pending
        mark = len(out)
        conflict = first <= last
        try:
            if conflict:
                encode(out, RecordType.TRUNCATE, 0, 0, first, b"")
            encode_entries(out, entries)  # ValueError unless the indexes are contiguous
        except ValueError:
            del out[mark:]
            raise
        if conflict:
            shape.truncate(first)
            self._records += 1
        shape.extend([entry.term for entry in entries])
        count = len(entries)
        self._bytes += len(out) - mark
        self._records += count
        self._entries += count
        if first + count - 1 > self._pending_max_entry:
            self._pending_max_entry = first + count - 1

    def set_hard_state(self, hard_state: HardState) -> None:
        """Buffer a new hard state; it becomes durable with the next :meth:`sync`."""
        self._check_usable()
        if hard_state == self._hard_state:
            return
        self._hard_state = hard_state
        self._bytes += encode_hard_state(self._pending, hard_state)
        self._records += 1

    def compact(self, index: int, term: int, *, discard: bool = False) -> None:
        """Make ``(index, term)`` the log's base: a durable snapshot covers it.

        If the log holds ``index`` with ``term`` the entries after it stay,
        unless ``discard``; otherwise (an installed snapshot the log does not
        match) every entry is discarded. Segments holding only entries at or below the base are
        deleted at the :meth:`sync` that makes this durable.
        """
        self._check_usable()
        if index <= self._shape.base_index:
            return
        kept = self._shape.compact(index, term, False if discard else None)
        kind = COMPACT_KEEP if kept else COMPACT_DISCARD
        self._bytes += encode(self._pending, RecordType.COMPACT, kind, term, index, b"")
        self._records += 1
        if self._hard_state is not None:
            # The hard state must survive the deletion of the segments before this one.
            self._bytes += encode_hard_state(self._pending, self._hard_state)
            self._records += 1
        self._compacted = True

    # -- durability -------------------------------------------------------------

    def sync(self) -> None:
        """Write everything buffered and (mode ``fsync``) fsync it: one write, one fsync.

        Blocking. Raises :class:`StorageFull` on ``ENOSPC`` and
        :class:`StorageError` on other I/O errors; the WAL is unusable after.
        """
        self._check_usable()
        if not self._pending:
            return
        started = time.perf_counter()
        pending = self._pending
        try:
            if self._active_size >= self._segment_bytes:
                self._roll()
            write_all(self._fd, pending)
        except OSError as exc:
            self._rollback_tail()
            raise self._fail(exc, "writing the WAL") from exc
        self._active_size += len(pending)
        active = self._segments[-1]
        active.max_entry_index = max(active.max_entry_index, self._pending_max_entry)
        self._pending = bytearray()
        self._pending_max_entry = 0
        if self._durability is Durability.FSYNC:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise self._fail(exc, "fsyncing the WAL") from exc
            self._fsyncs += 1
        if self._compacted:
            self._compacted = False
            self._delete_compacted_segments()
        self._syncs += 1
        self._last_sync = time.perf_counter() - started
        self._total_sync += self._last_sync

    def close(self) -> None:
        """Close the active segment; buffered records that were not synced are dropped."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def statistics(self) -> WalStatistics:
        return WalStatistics(
            appended_records=self._records,
            appended_entries=self._entries,
            appended_bytes=self._bytes,
            syncs=self._syncs,
            fsyncs=self._fsyncs,
            last_sync_seconds=self._last_sync,
            total_sync_seconds=self._total_sync,
            pending_bytes=len(self._pending),
            segments=len(self._segments),
            first_index=self._shape.base_index + 1,
            last_index=self._shape.last_index,
        )

    # -- internals ----------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageError(f"the WAL failed earlier and must be reopened: {self._failed}")
        if self._closed:
            raise StorageError("the WAL is closed")

    def _fail(self, exc: OSError, what: str) -> StorageError:
        self._failed = storage_error(exc, what)
        self._pending = bytearray()
        log.error("wal failed", directory=str(self._dir), error=str(self._failed))
        return self._failed

    def _rollback_tail(self) -> None:
        """Best effort: cut a partial write off so the file ends at a record boundary.

        Recovery would treat the partial record as a torn tail anyway.
        """
        try:
            os.ftruncate(self._fd, self._active_size)
        except OSError as exc:
            log.warning("wal tail rollback failed", error=str(exc), size=self._active_size)

    def _roll(self) -> None:
        """Start the next segment. The current one was fsynced by the previous sync."""
        seq = self._segments[-1].seq + 1
        fd = segments.create_segment(self._dir, seq, self._durability)
        os.close(self._fd)
        self._fd = fd
        self._active_size = segments.HEADER_SIZE
        self._segments.append(_Segment(seq, segments.segment_path(self._dir, seq), 0))

    def _delete_compacted_segments(self) -> None:
        """Delete the oldest segments whose entries all lie at or below the durable base."""
        base = self._shape.base_index
        doomed = 0
        while doomed < len(self._segments) - 1 and self._segments[doomed].max_entry_index <= base:
            doomed += 1
        if not doomed:
            return
        deleted = doomed
        try:
            # Oldest first, each deletion durable before the next: a crash part-way
            # leaves a contiguous run of segments, never a hole in the numbering.
            while doomed:
                self._segments[0].path.unlink()
                if self._durability is Durability.FSYNC:
                    fsync_directory(self._dir)
                del self._segments[0]
                doomed -= 1
        except OSError as exc:
            raise self._fail(exc, "deleting compacted WAL segments") from exc
        log.info("wal compacted", base_index=base, deleted_segments=deleted)


def _replay_segment(
    path: Path, seq: int, shape: LogShape, last: bool, durability: Durability
) -> tuple[int, HardState | None]:
    """Apply one segment's records to ``shape``; return its highest entry index and hard state."""
    buf = path.read_bytes()
    if len(buf) < segments.HEADER_SIZE:
        if not last:
            raise StorageCorrupt(path, 0, "segment shorter than its header")
        # Crashed while creating it: nothing was ever acknowledged from it.
        os.close(segments.create_segment(path.parent, seq, durability))
        log.warning("wal segment header torn; recreated", path=str(path))
        return 0, None
    segments.check_header(path, seq, buf)
    result = scan(buf, segments.HEADER_SIZE)
    max_entry = 0
    hard_state: HardState | None = None
    for record in result.records:
        try:
            rtype = record.type
            if rtype == _ENTRY:
                shape.append(record.log_index, record.term, decode_entry(record))
                if record.log_index > max_entry:
                    max_entry = record.log_index
            elif rtype == _HARD_STATE:
                hard_state = decode_hard_state(record)
            elif rtype == _TRUNCATE:
                shape.truncate(record.log_index)
            elif record.kind in (COMPACT_KEEP, COMPACT_DISCARD):
                shape.compact(record.log_index, record.term, record.kind == COMPACT_KEEP)
            else:
                raise ValueError(f"unknown compaction kind {record.kind}")
        except (LogGap, ValueError) as exc:
            raise StorageCorrupt(
                path, record.offset, f"valid checksum but bad record: {exc}"
            ) from exc
    if result.bad_offset is not None:
        bad = result.bad_offset
        if result.valid_after is not None:
            raise StorageCorrupt(
                path, bad, f"damaged record followed by a valid one at offset {result.valid_after}"
            )
        if not last:
            raise StorageCorrupt(path, bad, "damaged record in a segment that is not the last")
        _cut_torn_tail(path, bad, len(buf), durability)
    return max_entry, hard_state


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_torn_tail(path: Path, offset: int, size: int, durability: Durability) -> None:
    log.warning("wal torn tail cut", path=str(path), offset=offset, dropped_bytes=size - offset)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, offset)
        if durability is Durability.FSYNC:
            os.fsync(fd)
    finally:
        os.close(fd)

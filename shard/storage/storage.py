"""A replica's durable storage: the WAL and the snapshots of one data directory.

:func:`open_storage` recovers and returns a :class:`Storage` plus what it
recovered; the node runtime turns each Raft ``Ready`` into calls on it (see
the package docstring of :mod:`shard.storage`).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

import attrs

from shard.observability import get_logger
from shard.records import Entry, HardState, SnapshotMeta
from shard.storage.durability import Durability, fsync_directory
from shard.storage.errors import StorageCorrupt, StorageError, storage_error
from shard.storage.snapshots import Snapshot, SnapshotStore
from shard.storage.wal import DEFAULT_SEGMENT_BYTES, WalStatistics, WriteAheadLog

log = get_logger("shard.storage")

_LOCK_FILE = "LOCK"


@attrs.frozen
class Recovered:
    """What a replica had on disk: start from ``snapshot``, then replay ``entries``.

    ``entries`` are the log entries after the snapshot's index (after index 0
    without a snapshot), contiguous and in order.
    """

    snapshot: Snapshot | None
    hard_state: HardState
    entries: list[Entry]


@attrs.frozen
class StorageStatistics:
    wal: WalStatistics
    snapshots_saved: int
    snapshot_index: int  # index of the newest durable snapshot, 0 if none


class Storage:
    """Durable log, hard state and snapshots; create it with :func:`open_storage`.

    Not thread-safe: while :meth:`sync` or :meth:`save_snapshot` runs in a
    worker thread, make no other call on the same object.
    """

    def __init__(
        self,
        directory: Path,
        wal: WriteAheadLog,
        snapshots: SnapshotStore,
        snapshot_meta: SnapshotMeta | None,
        lock_fd: int,
    ) -> None:
        self._dir = directory
        self._wal = wal
        self._snapshots = snapshots
        self._snapshot_meta = snapshot_meta
        self._lock_fd: int | None = lock_fd
        self._snapshots_saved = 0

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def last_index(self) -> int:
        """Index of the last entry appended (buffered or durable), or of the snapshot."""
        return self._wal.last_index

    @property
    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot_meta

    def append(self, entries: Sequence[Entry]) -> None:
        """Buffer contiguous ``entries``; held entries from the first index on are replaced."""
        self._wal.append(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        """Buffer the hard state; it is durable after the next :meth:`sync`."""
        self._wal.set_hard_state(hard_state)

    def sync(self) -> None:
        """Blocking: make everything buffered durable with one write and one fsync."""
        self._wal.sync()

    def save_snapshot(self, meta: SnapshotMeta, data: bytes, *, replace_log: bool = False) -> None:
        """Blocking: durably store a snapshot, then compact the log up to ``meta.index``.

        For a snapshot taken locally the entries after ``meta.index`` stay.
        With ``replace_log`` (a snapshot installed from the leader, the
        Raft core's ``Ready.snapshot``) every entry is discarded and the log
        continues at ``meta.index + 1``; without it the entries are discarded
        only if the log does not hold ``(meta.index, meta.term)``. The
        compaction record is buffered; old WAL segments are deleted by the
        :meth:`sync` that makes it durable. (After a crash before that sync,
        recovery keeps the entries after the snapshot if the log holds
        ``(meta.index, meta.term)``: a log that matches the snapshot.)
        """
        current = self._snapshot_meta
        if current is not None and meta.index <= current.index:
            if meta.index == current.index and meta.term == current.term:
                return
            raise ValueError(f"snapshot at {meta.index} is not newer than {current.index}")
        self._snapshots.save(Snapshot(meta, data))
        self._snapshot_meta = meta
        self._snapshots_saved += 1
        self._wal.compact(meta.index, meta.term, discard=replace_log)

    def statistics(self) -> StorageStatistics:
        meta = self._snapshot_meta
        return StorageStatistics(
            wal=self._wal.statistics(),
            snapshots_saved=self._snapshots_saved,
            snapshot_index=meta.index if meta is not None else 0,
        )

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close files and release the directory lock; unsynced records are dropped.

        Idempotent. ``with storage: ...`` closes it on exit.
        """
        self._wal.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None


def open_storage(
    directory: Path | str,
    durability: Durability | str = Durability.FSYNC,
    *,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
) -> tuple[Storage, Recovered]:
    """Open (creating if needed) the data directory and recover it.

    Raises :class:`StorageCorrupt` when the data cannot be trusted and
    :class:`StorageError` when another process holds the directory.
    """
    path = Path(directory)
    mode = Durability(durability)
    lock_fd = _lock_directory(path, mode)
    try:
        storage, recovered = _recover(path, mode, segment_bytes, lock_fd)
    except OSError as exc:
        os.close(lock_fd)
        raise storage_error(exc, f"recovering {path}") from exc
    except BaseException:
        os.close(lock_fd)
        raise
    log.info(
        "storage opened",
        directory=str(path),
        durability=str(mode),
        snapshot_index=recovered.snapshot.meta.index if recovered.snapshot else 0,
        entries=len(recovered.entries),
        term=recovered.hard_state.term,
    )
    return storage, recovered


def _lock_directory(path: Path, mode: Durability) -> int:
    """Create the directory if needed and take an exclusive lock on it."""
    try:
        if not path.is_dir():
            path.mkdir(parents=True)
            if mode is Durability.FSYNC:
                fsync_directory(path.parent)
        fd = os.open(path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise storage_error(exc, f"creating or locking {path}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StorageError(f"{path} is in use by another process") from exc
    return fd


def _recover(
    path: Path, mode: Durability, segment_bytes: int, lock_fd: int
) -> tuple[Storage, Recovered]:
    snapshots = SnapshotStore(path, mode)
    snapshot = snapshots.load_latest()
    wal, wal_state = WriteAheadLog.open(path, mode, segment_bytes)
    try:
        entries = wal_state.entries
        base = wal_state.base_index
        if snapshot is None:
            if base != 0:
                raise StorageCorrupt(path, 0, f"the log is compacted to {base} but no snapshot")
        else:
            meta = snapshot.meta
            if meta.index < base or (meta.index == base and meta.term != wal_state.base_term):
                raise StorageCorrupt(
                    path,
                    0,
                    f"the log is compacted to ({base}, {wal_state.base_term}) but the newest "
                    f"valid snapshot is at ({meta.index}, {meta.term})",
                )
            if meta.index > base:
                # Crashed after the snapshot was saved, before its compaction record was
                # durable: apply the same rule the compaction record would have, and make
                # the record durable before the node acts on the log it leaves. Left
                # buffered, a second crash would recover the old log again, and a later
                # snapshot matching one of its stale entries would revive the entries
                # after it, which this recovery had discarded.
                at = meta.index - base - 1
                if at < len(entries) and entries[at].term == meta.term:
                    entries = entries[at + 1 :]
                else:
                    entries = []
                wal.compact(meta.index, meta.term)
                wal.sync()
    except BaseException:
        wal.close()
        raise
    storage = Storage(path, wal, snapshots, snapshot.meta if snapshot else None, lock_fd)
    return storage, Recovered(snapshot, wal_state.hard_state or HardState(), entries)

"""Durable storage of a replica: a write-ahead log with group commit, and snapshots.

Plain blocking file I/O, no trio: the node runtime calls the blocking methods
(:meth:`Storage.sync`, :meth:`Storage.save_snapshot`) through
``trio.to_thread.run_sync`` and makes no other call on the storage meanwhile.

    storage, recovered = open_storage(data_dir, "fsync")
    # recovered.snapshot: Snapshot(meta, data) | None   -- restore the state machine
    # recovered.hard_state: HardState                   -- term, vote, commit
    # recovered.entries: list[Entry]                    -- the log after the snapshot

    # per Raft Ready, before sending any message of that Ready:
    if ready.snapshot: storage.save_snapshot(meta, data)    # blocking, durable on return
    storage.append(ready.entries)     # buffered; replaces any suffix from entries[0].index
    storage.set_hard_state(ready.hard_state)                # buffered
    await trio.to_thread.run_sync(storage.sync)             # one write + one fsync for all
    # after taking a local snapshot at applied index i:
    storage.save_snapshot(SnapshotMeta(i, term_at_i, membership), engine_bytes)

Errors (:mod:`shard.storage.errors`): :class:`StorageFull` on ``ENOSPC`` and
:class:`StorageError` on other I/O failures -- stop acknowledging and restart;
:class:`StorageCorrupt` when opening finds data it cannot trust.
Durability (:class:`Durability`): ``"fsync"`` (default) or ``"none"``
(unsafe: survives a process crash, not a power loss). Formats and recovery
rules are described in ``docs/storage.md``.
"""

from shard.storage.durability import Durability
from shard.storage.errors import StorageCorrupt, StorageError, StorageFull
from shard.storage.snapshots import Snapshot
from shard.storage.storage import Recovered, Storage, StorageStatistics, open_storage
from shard.storage.wal import WalStatistics

__all__ = [
    "Durability",
    "Recovered",
    "Snapshot",
    "Storage",
    "StorageCorrupt",
    "StorageError",
    "StorageFull",
    "StorageStatistics",
    "WalStatistics",
    "open_storage",
]

"""Durable storage of a replica: a write-ahead log with group commit, and snapshots.

Plain blocking file I/O, no trio: the node runtime calls the blocking methods
(:meth:`Storage.sync`, :meth:`Storage.save_snapshot`) through
``trio.to_thread.run_sync`` and makes no other call on the storage meanwhile.

    storage, recovered = open_storage(data_dir, "fsync")
    # recovered.snapshot: Snapshot(meta, data) | None   -- restore the state machine
    # recovered.hard_state: HardState                   -- term, vote, commit
    # recovered.entries: list[Entry]                    -- the log after the snapshot

    # per Raft Ready, before sending any message of that Ready:
    if rd.snapshot:                     # installed from the leader: replaces the whole log
        storage.save_snapshot(rd.snapshot.meta, rd.snapshot.data, replace_log=True)
    storage.append(rd.entries)          # buffered; replaces held entries >= entries[0].index
    if rd.hard_state: storage.set_hard_state(rd.hard_state)     # buffered
    await trio.to_thread.run_sync(storage.sync)   # one write + one fsync for all of it
    # after a local snapshot (snap = raft.compact(applied, engine_bytes)):
    storage.save_snapshot(snap.meta, snap.data)   # blocking; keeps the entries after it

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

"""Replica data directories written by hand, for tests that read one back offline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shard.proposals import Proposal, encode_batch
from shard.records import Entry, EntryKind, HardState, Membership, SnapshotMeta
from shard.sessions import REGISTER, session_id
from shard.storage import open_storage

GATEWAY = session_id("gw", 2, 0)  # the session the first batch registers (entry 2, position 0)


def log_entries(create: bytes, batches: Sequence[Sequence[Proposal]]) -> list[Entry]:
    """A leader's no-op at index 1, then entry 2 registering ``GATEWAY`` and creating the
    market (seq 1), then one entry per batch; all in term 1."""
    first = [Proposal("gw", REGISTER, 0, b""), Proposal(GATEWAY, 1, 1, create)]
    return [Entry(1, 1, EntryKind.NOOP, b"")] + [
        Entry(1, i, EntryKind.NORMAL, encode_batch(batch))
        for i, batch in enumerate([first, *batches], start=2)
    ]


def write_data_dir(
    path: Path, entries: Sequence[Entry], commit: int, snapshot: tuple[int, bytes] | None = None
) -> None:
    """Store ``entries`` with the persisted ``commit`` index and, when given, a snapshot
    ``(index, state machine snapshot)`` that compacts the log up to that index."""
    storage, _ = open_storage(path, "none")
    try:
        storage.append(list(entries))
        storage.set_hard_state(HardState(term=1, vote="r1", commit=commit))
        if snapshot is not None:
            index, data = snapshot
            storage.save_snapshot(SnapshotMeta(index, 1, Membership(("r1",))), data)
        storage.sync()
    finally:
        storage.close()

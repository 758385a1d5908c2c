"""Tunables of a replica (with defaults good for the local topology) and small shared records."""

from __future__ import annotations

import attrs
import trio

from shard.node.digests import Checkpoint


@attrs.frozen
class ReplicaOptions:
    snapshot_every: int = 20_000  # applied log entries between snapshots (and digests)
    ring_capacity: int = 100_000  # applied commands kept for subscribers
    max_batch_commands: int = 4096  # proposals per log entry
    max_batch_bytes: int = 1 << 20
    # Uncommitted entries a leader lets in flight before it holds new submits back;
    # under load they then pile up and go out as one bigger entry (like Nagle).
    max_pipeline_entries: int = 4
    max_queued_commands: int = 200_000  # submits waiting for a free pipeline slot (memory bound)
    read_timeout_ms: int = 3000  # a ReadIndex not answered by then gets `timeout`
    retain_entries: int = 4096  # log entries kept in memory after a snapshot


class SnapshotRequest:
    """An ``admin snapshot`` waiting for the driver."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.checkpoint: Checkpoint | None = None

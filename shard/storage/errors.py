"""The errors storage raises, split by what the node should do about them.

* :class:`StorageFull` -- the disk is full (``ENOSPC``). Nothing acknowledged
  is lost, but the node must stop acknowledging; a restart recovers the valid
  prefix once space is available.
* :class:`StorageCorrupt` -- a record or snapshot on disk fails its checksum
  (or breaks the log's rules) somewhere recovery cannot explain as a torn
  write. The node refuses to start rather than apply a corrupt record.
* :class:`StorageError` -- the base class; also raised for any other I/O
  failure, after which the storage object refuses further use.
"""

from __future__ import annotations

import errno
from pathlib import Path


class StorageError(Exception):
    """Durable storage cannot go on; the node must stop acknowledging."""


class StorageFull(StorageError):
    """The disk is full: a write or fsync failed with ``ENOSPC``."""


class StorageCorrupt(StorageError):
    """Data on disk is corrupt; ``path`` and ``offset`` say where."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


def storage_error(exc: OSError, what: str) -> StorageError:
    """Translate an ``OSError`` raised while doing ``what`` into a storage error."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"disk full while {what}: {exc}")
    return StorageError(f"I/O error while {what}: {exc}")

"""WAL segment files: names, the file header, creating and listing them.

A segment is ``wal-<seq>.log`` where ``seq`` counts up from 1; it starts with
a 16-byte header (magic ``CLOBWAL1`` and its own ``seq``) and holds records
(:mod:`shard.storage.wal_records`). The WAL writes only to the newest
segment; older ones are immutable and are deleted whole by compaction.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

from shard.storage.durability import Durability, fsync_directory, write_all
from shard.storage.errors import StorageCorrupt

MAGIC = b"CLOBWAL1"
_HEADER = struct.Struct("<8sQ")
HEADER_SIZE = _HEADER.size
_NAME = re.compile(r"wal-(\d{16})\.log")


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"wal-{seq:016d}.log"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files in ``directory`` as ``(seq, path)``, oldest first."""
    found = []
    for path in directory.iterdir():
        match = _NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    return found


def check_header(path: Path, seq: int, buf: bytes) -> None:
    """Raise :class:`StorageCorrupt` unless ``buf`` starts with segment ``seq``'s header."""
    magic, stored = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise StorageCorrupt(path, 0, f"not a WAL segment (magic {magic!r})")
    if stored != seq:
        raise StorageCorrupt(path, 0, f"header says segment {stored}, file name says {seq}")


def create_segment(directory: Path, seq: int, durability: Durability) -> int:
    """Create segment ``seq`` (replacing a torn, header-less one) and open it for appending.

    In ``fsync`` mode the header and the new name are durable on return.
    """
    path = segment_path(directory, seq)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        write_all(fd, _HEADER.pack(MAGIC, seq))
        if durability is Durability.FSYNC:
            os.fsync(fd)
            fsync_directory(directory)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_segment(directory: Path, seq: int) -> int:
    """Open an existing segment for appending at its end."""
    return os.open(segment_path(directory, seq), os.O_WRONLY | os.O_APPEND)

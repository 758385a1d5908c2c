"""Snapshot files: written atomically, checksummed, newest valid one loaded.

A snapshot is ``snap-<index>.snap``::

    magic "CLOBSNP1" | meta_len u32 | data_len u64 | crc u32 | meta | data

``meta`` is msgpack ``[index, term, voters, learners]`` (a
:class:`~shard.records.SnapshotMeta`); ``crc`` is ``zlib.crc32`` over the
first 20 header bytes, ``meta`` and ``data``. Saving writes ``<name>.tmp``,
fsyncs it, renames it into place and fsyncs the directory; only then are
older snapshots deleted, so a crash at any point leaves the previous good
snapshot or the new one in force, never neither. Loading deletes leftover
temp files and sets aside (renames to ``.corrupt``) any snapshot that fails
its checks, falling back to the next older one.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import attrs
import msgpack

from shard.observability import get_logger
from shard.records import Membership, SnapshotMeta
from shard.storage.durability import Durability, fsync_directory, write_all
from shard.storage.errors import storage_error

log = get_logger("shard.storage.snapshots")

MAGIC = b"CLOBSNP1"
_HEADER = struct.Struct("<8sIQI")
_NAME = re.compile(r"snap-(\d{20})\.snap")
_TEMP_SUFFIX = ".tmp"


@attrs.frozen
class Snapshot:
    """A snapshot as stored: where it sits in the log, and the state machine's bytes."""

    meta: SnapshotMeta
    data: bytes


class InvalidSnapshot(ValueError):
    """A snapshot file that fails its checks."""


def snapshot_path(directory: Path, index: int) -> Path:
    return directory / f"snap-{index:020d}.snap"


def encode_snapshot(snapshot: Snapshot) -> list[bytes]:
    """The file contents of ``snapshot`` as a list of chunks (the data is not copied)."""
    meta = snapshot.meta
    membership = meta.membership
    packed = msgpack.packb(
        [meta.index, meta.term, list(membership.voters), list(membership.learners)]
    )
    prefix = _HEADER.pack(MAGIC, len(packed), len(snapshot.data), 0)[:-4]
    crc = zlib.crc32(snapshot.data, zlib.crc32(packed, zlib.crc32(prefix)))
    return [prefix, struct.pack("<I", crc), packed, snapshot.data]


def decode_snapshot(buf: bytes) -> Snapshot:
    """Parse and verify a snapshot file's contents; :class:`InvalidSnapshot` if damaged."""
    if len(buf) < _HEADER.size:
        raise InvalidSnapshot("shorter than the header")
    magic, meta_len, data_len, crc = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise InvalidSnapshot(f"bad magic {magic!r}")
    if _HEADER.size + meta_len + data_len != len(buf):
        raise InvalidSnapshot(f"lengths {meta_len}+{data_len} do not match the file size")
    packed = buf[_HEADER.size : _HEADER.size + meta_len]
    data = buf[_HEADER.size + meta_len :]
    if zlib.crc32(data, zlib.crc32(packed, zlib.crc32(buf[: _HEADER.size - 4]))) != crc:
        raise InvalidSnapshot("checksum mismatch")
    try:
        index, term, voters, learners = msgpack.unpackb(packed)
        meta = SnapshotMeta(index, term, Membership(tuple(voters), tuple(learners)))
    except (ValueError, TypeError) as exc:
        raise InvalidSnapshot(f"bad metadata: {exc}") from exc
    return Snapshot(meta, data)


class SnapshotStore:
    """The snapshot files of one data directory."""

    def __init__(self, directory: Path, durability: Durability) -> None:
        self._dir = directory
        self._durability = durability

    def load_latest(self) -> Snapshot | None:
        """The newest valid snapshot, after clearing temp files and setting aside bad ones."""
        fsync = self._durability is Durability.FSYNC
        changed = False
        candidates: list[tuple[int, Path]] = []
        for path in self._dir.iterdir():
            match = _NAME.fullmatch(path.name)
            if match:
                candidates.append((int(match.group(1)), path))
            elif path.name.startswith("snap-") and path.name.endswith(_TEMP_SUFFIX):
                log.warning("removing unfinished snapshot", path=str(path))
                path.unlink()
                changed = True
        found: Snapshot | None = None
        for index, path in sorted(candidates, reverse=True):
            try:
                snapshot = decode_snapshot(path.read_bytes())
                if snapshot.meta.index != index:
                    raise InvalidSnapshot(f"holds index {snapshot.meta.index}")
            except InvalidSnapshot as exc:
                log.error("setting aside invalid snapshot", path=str(path), reason=str(exc))
                path.rename(path.with_name(path.name + ".corrupt"))
                changed = True
                continue
            found = snapshot
            break
        if changed and fsync:
            fsync_directory(self._dir)
        return found

    def save(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` atomically; durable on return (mode ``fsync``).

        Older snapshots are deleted once the new one is in place. Raises
        :class:`~shard.storage.errors.StorageFull` on ``ENOSPC``, leaving the
        previous snapshot in force.
        """
        final = snapshot_path(self._dir, snapshot.meta.index)
        temp = final.with_name(final.name + _TEMP_SUFFIX)
        fsync = self._durability is Durability.FSYNC
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                for chunk in encode_snapshot(snapshot):
                    write_all(fd, chunk)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final)
            if fsync:
                fsync_directory(self._dir)
        except OSError as exc:
            self._discard(temp)
            raise storage_error(exc, f"saving snapshot {final.name}") from exc
        try:
            self._delete_older(snapshot.meta.index)
        except OSError as exc:
            raise storage_error(exc, "deleting older snapshots") from exc

    def _delete_older(self, index: int) -> None:
        deleted = False
        for path in self._dir.iterdir():
            match = _NAME.fullmatch(path.name)
            if match and int(match.group(1)) < index:
                path.unlink()
                deleted = True
        if deleted and self._durability is Durability.FSYNC:
            fsync_directory(self._dir)

    def _discard(self, temp: Path) -> None:
        try:
            temp.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove unfinished snapshot", path=str(temp), error=str(exc))

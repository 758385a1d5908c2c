"""Snapshot files: atomic replacement, checksums, fallback, full disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from shard.records import Entry, EntryKind, Membership, SnapshotMeta
from shard.storage import Durability, StorageFull, open_storage
from shard.storage.snapshots import (
    InvalidSnapshot,
    Snapshot,
    SnapshotStore,
    decode_snapshot,
    encode_snapshot,
    snapshot_path,
)

MEMBERS = Membership(("n1", "n2", "n3"), ("n4",))


def snap(index: int, term: int = 1, data: bytes | None = None) -> Snapshot:
    body = data if data is not None else f"state at {index}".encode() * 3
    return Snapshot(SnapshotMeta(index, term, MEMBERS), body)


def snapshot_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("snap-"))


def test_round_trip_through_the_store(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, Durability.FSYNC)
    assert store.load_latest() is None
    store.save(snap(7, 2, b"\x00\xffbinary"))
    assert store.load_latest() == snap(7, 2, b"\x00\xffbinary")
    store.save(snap(9, 3, b""))
    assert store.load_latest() == snap(9, 3, b"")


def test_older_snapshots_are_deleted_after_a_new_one_is_durable(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, Durability.FSYNC)
    for index in (3, 5, 8):
        store.save(snap(index))
    assert snapshot_files(tmp_path) == [snapshot_path(tmp_path, 8).name]


def test_every_flipped_bit_is_detected() -> None:
    data = b"".join(encode_snapshot(snap(12, 4, b"engine-bytes")))
    assert decode_snapshot(data) == snap(12, 4, b"engine-bytes")
    for bit in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidSnapshot):
            decode_snapshot(bytes(damaged))
    for cut in range(len(data)):
        with pytest.raises(InvalidSnapshot):
            decode_snapshot(data[:cut])


class Crash(BaseException):
    """The process dies here."""


def test_crash_between_temp_write_and_rename_keeps_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SnapshotStore(tmp_path, Durability.FSYNC)
    store.save(snap(5))

    def crash(src: object, dst: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", crash)
        with pytest.raises(Crash):
            store.save(snap(9))
    temp = snapshot_path(tmp_path, 9).name + ".tmp"
    assert temp in snapshot_files(tmp_path)  # the crash left the finished temp file
    assert SnapshotStore(tmp_path, Durability.FSYNC).load_latest() == snap(5)
    assert snapshot_files(tmp_path) == [snapshot_path(tmp_path, 5).name]


def test_crash_mid_temp_write_keeps_the_previous_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, Durability.FSYNC)
    store.save(snap(5))
    data = b"".join(encode_snapshot(snap(9)))
    temp = tmp_path / (snapshot_path(tmp_path, 9).name + ".tmp")
    temp.write_bytes(data[: len(data) // 2])
    assert store.load_latest() == snap(5)
    assert not temp.exists()


def test_invalid_newest_snapshot_is_set_aside_and_the_previous_used(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, Durability.FSYNC)
    store.save(snap(5))
    damaged = bytearray(b"".join(encode_snapshot(snap(9))))
    damaged[-2] ^= 1
    snapshot_path(tmp_path, 9).write_bytes(damaged)
    assert store.load_latest() == snap(5)
    assert snapshot_path(tmp_path, 9).name + ".corrupt" in snapshot_files(tmp_path)
    assert store.load_latest() == snap(5)


def test_snapshot_under_the_wrong_name_is_invalid(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, Durability.FSYNC)
    snapshot_path(tmp_path, 4).write_bytes(b"".join(encode_snapshot(snap(3))))
    assert store.load_latest() is None


def test_fsync_counts_by_durability(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [0]
    real = os.fsync

    def counting(fd: int) -> None:
        calls[0] += 1
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    (tmp_path / "none").mkdir()
    SnapshotStore(tmp_path / "none", Durability.NONE).save(snap(1))
    SnapshotStore(tmp_path / "none", Durability.NONE).save(snap(2))
    assert calls[0] == 0
    (tmp_path / "fsync").mkdir()
    store = SnapshotStore(tmp_path / "fsync", Durability.FSYNC)
    store.save(snap(1))
    assert calls[0] == 2  # the temp file, then the directory after the rename
    store.save(snap(2))
    assert calls[0] == 5  # plus the directory after deleting snapshot 1


def test_disk_full_while_saving_keeps_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append([Entry(1, i, EntryKind.NORMAL, b"x") for i in range(1, 21)])
    storage.sync()
    storage.save_snapshot(SnapshotMeta(5, 1, MEMBERS), b"five")
    storage.sync()
    real = os.write

    def full(fd: int, data: bytes) -> int:
        if len(data) > 100:
            raise OSError(errno.ENOSPC, "no space")
        return real(fd, data)

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full)
        with pytest.raises(StorageFull):
            storage.save_snapshot(SnapshotMeta(15, 1, MEMBERS), b"fifteen" * 100)
    assert not any(name.endswith(".tmp") for name in snapshot_files(tmp_path))
    assert storage.statistics().snapshot_index == 5
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert recovered.snapshot == Snapshot(SnapshotMeta(5, 1, MEMBERS), b"five")
    assert [e.index for e in recovered.entries] == list(range(6, 21))
    storage.close()


def test_storage_refuses_an_older_snapshot(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append([Entry(1, i, EntryKind.NORMAL, b"x") for i in range(1, 11)])
    storage.save_snapshot(SnapshotMeta(8, 1, MEMBERS), b"8")
    storage.save_snapshot(SnapshotMeta(8, 1, MEMBERS), b"8")  # repeated: no-op
    with pytest.raises(ValueError, match="not newer"):
        storage.save_snapshot(SnapshotMeta(6, 1, MEMBERS), b"6")
    assert storage.statistics().snapshots_saved == 1
    storage.close()

"""The WAL through the storage API: round trips, group commit, truncation, segments, full disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from shard.records import Entry, EntryKind, HardState, Membership, SnapshotMeta
from shard.storage import (
    Durability,
    StorageError,
    StorageFull,
    open_storage,
)
from shard.storage.segments import list_segments


def entries(first: int, last: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    return [
        Entry(term, i, EntryKind.NORMAL, tag + f"cmd-{i}".encode() * (i % 5))
        for i in range(first, last + 1)
    ]


class FsyncCounter:
    """Counts os.fsync calls while still fsyncing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = os.fsync

        def counting(fd: int) -> None:
            self.calls += 1
            real(fd)

        monkeypatch.setattr(os, "fsync", counting)


def test_round_trip_entries_and_hard_state(tmp_path: Path) -> None:
    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == [] and recovered.snapshot is None
    assert recovered.hard_state == HardState()
    written = [
        *entries(1, 50),
        Entry(2, 51, EntryKind.NOOP, b""),
        Entry(2, 52, EntryKind.CONFIG, b"c"),
    ]
    storage.append(written[:20])
    storage.append(written[20:])
    storage.set_hard_state(HardState(term=2, vote="n1", commit=40))
    storage.sync()
    storage.close()

    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == written
    assert recovered.hard_state == HardState(term=2, vote="n1", commit=40)
    assert storage.last_index == 52
    storage.close()


def test_last_hard_state_wins_and_vote_none_round_trips(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    for term in range(1, 6):
        storage.set_hard_state(HardState(term=term, vote=f"n{term}", commit=0))
        storage.sync()
    storage.set_hard_state(HardState(term=6, vote=None, commit=3))
    storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert recovered.hard_state == HardState(term=6, vote=None, commit=3)
    storage.close()


def test_unsynced_records_are_not_recovered_after_close(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 3))
    storage.sync()
    storage.append(entries(4, 6))
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert [e.index for e in recovered.entries] == [1, 2, 3]
    storage.close()


def test_group_commit_one_fsync_for_many_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = open_storage(tmp_path, "fsync")
    counter = FsyncCounter(monkeypatch)
    for i in range(1, 501):
        storage.append([Entry(1, i, EntryKind.NORMAL, b"x" * 10)])
        storage.set_hard_state(HardState(term=1, vote="a", commit=i - 1))
    assert counter.calls == 0
    assert storage.statistics().wal.pending_bytes > 500 * 42
    storage.sync()
    assert counter.calls == 1
    stats = storage.statistics().wal
    assert stats.appended_entries == 500
    assert stats.appended_records == 1000
    assert stats.syncs == 1 and stats.fsyncs == 1 and stats.pending_bytes == 0
    assert stats.appended_bytes == 500 * (32 + 10) + sum(32 + 1 for _ in range(500))
    storage.sync()  # nothing buffered: no fsync
    assert counter.calls == 1
    storage.close()


def test_durability_none_never_fsyncs_but_survives_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = FsyncCounter(monkeypatch)
    storage, _ = open_storage(tmp_path, Durability.NONE, segment_bytes=256)
    for i in range(1, 40):
        storage.append(entries(i, i))
        storage.sync()
    storage.save_snapshot(SnapshotMeta(20, 1, Membership(("a",))), b"state")
    storage.sync()
    assert storage.statistics().wal.fsyncs == 0
    storage.close()
    assert counter.calls == 0
    storage, recovered = open_storage(tmp_path, "none")
    assert [e.index for e in recovered.entries] == list(range(21, 40))
    storage.close()
    assert counter.calls == 0


def test_fsync_mode_fsyncs_files_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = open_storage(tmp_path / "d", "fsync", segment_bytes=200)
    counter = FsyncCounter(monkeypatch)
    storage.append(entries(1, 5))
    storage.sync()
    assert counter.calls == 1
    storage.append(entries(6, 6))
    storage.sync()  # the segment is past 200 bytes: roll = header fsync + dir fsync + data fsync
    assert counter.calls == 4
    assert len(list_segments(tmp_path / "d")) == 2
    storage.close()


def test_suffix_truncation_on_conflict(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 10, term=1))
    storage.sync()
    storage.append(entries(6, 8, term=2, tag=b"new"))  # replaces 6..10
    assert storage.last_index == 8
    storage.sync()
    # and again inside one unsynced batch
    storage.append(entries(9, 12, term=2))
    storage.append(entries(11, 11, term=3))
    storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path)
    expected = entries(1, 5, 1) + entries(6, 8, 2, b"new") + entries(9, 10, 2) + entries(11, 11, 3)
    assert recovered.entries == expected
    storage.close()


def test_append_refuses_gaps_and_compacted_indexes(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 5))
    with pytest.raises(ValueError, match="append at 7"):
        storage.append(entries(7, 8))
    with pytest.raises(ValueError, match="not contiguous"):
        storage.append([*entries(6, 6), *entries(8, 8)])
    assert storage.last_index == 5
    storage.sync()
    with pytest.raises(ValueError, match="not contiguous"):
        storage.append([*entries(3, 3, term=2), *entries(5, 5, term=2)])  # conflict, then a gap
    assert storage.last_index == 5 and storage.statistics().wal.pending_bytes == 0
    storage.save_snapshot(SnapshotMeta(3, 1, Membership(("a",))), b"")
    with pytest.raises(ValueError, match="append at 3"):
        storage.append(entries(3, 3))
    storage.append(entries(4, 4, term=2))
    assert storage.last_index == 4
    storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == entries(4, 4, term=2)
    storage.close()


def test_segments_roll_and_recover(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=300)
    for i in range(1, 101):
        storage.append(entries(i, i))
        storage.sync()
    segs = storage.statistics().wal.segments
    assert segs == len(list_segments(tmp_path)) > 10
    storage.close()
    storage, recovered = open_storage(tmp_path, segment_bytes=300)
    assert recovered.entries == entries(1, 100)
    storage.close()


def test_compaction_deletes_whole_old_segments(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=300)
    for i in range(1, 101):
        storage.append(entries(i, i))
        storage.set_hard_state(HardState(1, "a", i))
        storage.sync()
    before = list_segments(tmp_path)
    storage.save_snapshot(SnapshotMeta(60, 1, Membership(("a", "b"), ("c",))), b"snap-60")
    assert list_segments(tmp_path) == before  # deletion waits for the durable marker
    storage.sync()
    after = list_segments(tmp_path)
    assert after[0][0] > before[0][0] and after[-1][0] >= before[-1][0]
    assert len(after) < len(before) / 2
    storage.append(entries(101, 105))
    storage.sync()
    storage.close()
    for _ in range(2):  # recovery of a log that starts mid-way is stable
        storage, recovered = open_storage(tmp_path, segment_bytes=300)
        assert recovered.snapshot is not None and recovered.snapshot.data == b"snap-60"
        assert recovered.snapshot.meta.membership == Membership(("a", "b"), ("c",))
        assert recovered.entries == entries(61, 105)
        assert recovered.hard_state == HardState(1, "a", 100)
        storage.close()


def test_installed_snapshot_that_does_not_match_discards_the_log(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 30, term=1))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(20, 3, Membership(("a",))), b"leader")  # term differs
    assert storage.last_index == 20
    storage.append(entries(21, 22, term=3))
    storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == entries(21, 22, term=3)
    storage.close()


def test_snapshot_beyond_the_log(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 5))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(100, 4, Membership(("a",))), b"far")
    storage.sync()
    assert storage.last_index == 100
    storage.append(entries(101, 101, term=4))
    storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == entries(101, 101, term=4)
    storage.close()


def _failing_write(monkeypatch: pytest.MonkeyPatch, after_bytes: int, code: int) -> None:
    """os.write writes up to ``after_bytes`` more bytes, then fails with ``code``."""
    real = os.write
    budget = [after_bytes]

    def write(fd: int, data: Any) -> int:
        if budget[0] <= 0:
            raise OSError(code, os.strerror(code))
        n = real(fd, bytes(data)[: budget[0]])
        budget[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("written", [0, 1, 31, 32, 45, 200, 1000])
def test_disk_full_on_write_raises_and_keeps_a_consistent_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: int
) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 10))
    storage.set_hard_state(HardState(1, "a", 5))
    storage.sync()
    storage.append(entries(11, 40))
    storage.set_hard_state(HardState(2, "b", 30))
    with monkeypatch.context() as patch:
        _failing_write(patch, written, errno.ENOSPC)
        with pytest.raises(StorageFull, match="disk full"):
            storage.sync()
    with pytest.raises(StorageError, match="failed earlier"):
        storage.append(entries(41, 41))
    with pytest.raises(StorageError, match="failed earlier"):
        storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == entries(1, 10)  # the partial write was rolled back
    assert recovered.hard_state == HardState(1, "a", 5)
    storage.close()


def test_disk_full_without_rollback_recovers_a_valid_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 10))
    storage.sync()
    storage.append(entries(11, 40))
    with monkeypatch.context() as patch:
        _failing_write(patch, 700, errno.ENOSPC)

        def no_truncate(fd: int, size: int) -> None:
            raise OSError(errno.ENOSPC, "no space")

        patch.setattr(os, "ftruncate", no_truncate)
        with pytest.raises(StorageFull):
            storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path)
    got = [e.index for e in recovered.entries]
    assert got == list(range(1, len(got) + 1)) and 10 < len(got) < 40
    assert recovered.entries == entries(1, len(got))
    storage.close()


def test_disk_full_on_fsync_raises_storage_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 3))

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "no space")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageFull):
        storage.sync()
    monkeypatch.undo()
    with pytest.raises(StorageError):
        storage.append(entries(4, 4))
    storage.close()


def test_other_io_errors_raise_storage_error_not_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 3))
    with monkeypatch.context() as patch:
        _failing_write(patch, 0, errno.EIO)
        with pytest.raises(StorageError) as info:
            storage.sync()
    assert not isinstance(info.value, StorageFull)
    storage.close()


def test_directory_is_locked_against_a_second_opener(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    with pytest.raises(StorageError, match="in use"):
        open_storage(tmp_path)
    storage.close()
    again, _ = open_storage(tmp_path)
    again.close()


def test_installed_snapshot_replacing_the_log_discards_even_a_matching_suffix(
    tmp_path: Path,
) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 30, term=1))
    storage.save_snapshot(SnapshotMeta(20, 1, Membership(("a",))), b"leader", replace_log=True)
    assert storage.last_index == 20
    storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == [] and storage.last_index == 20
    storage.close()


class Crash(BaseException):
    """The process dies here."""


def test_crash_part_way_through_deleting_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=300)
    for i in range(1, 61):
        storage.append(entries(i, i))
        storage.sync()
    before = len(list_segments(tmp_path))
    storage.save_snapshot(SnapshotMeta(50, 1, Membership(("a",))), b"s50")
    real_unlink = Path.unlink
    calls = [0]

    def unlink_then_crash(self: Path, missing_ok: bool = False) -> None:
        if calls[0] == 2:
            raise Crash
        calls[0] += 1
        real_unlink(self, missing_ok)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", unlink_then_crash)
        with pytest.raises(Crash):
            storage.sync()
    storage.close()
    seqs = [seq for seq, _ in list_segments(tmp_path)]
    assert seqs[0] == 3 and seqs[-1] >= before  # the two oldest are gone, no hole
    storage, recovered = open_storage(tmp_path, segment_bytes=300)
    assert recovered.entries == entries(51, 60)
    storage.sync()
    storage.close()


def test_storage_is_a_context_manager_and_close_is_idempotent(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    with storage:
        storage.append(entries(1, 2))
        storage.sync()
    storage.close()
    with pytest.raises(StorageError, match="closed"):
        storage.append(entries(3, 3))
    again, recovered = open_storage(tmp_path)  # the lock was released
    with again:
        assert recovered.entries == entries(1, 2)

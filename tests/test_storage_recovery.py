"""Recovery from damaged files: torn tails are cut, corruption anywhere else refuses to open."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from shard.records import Entry, EntryKind, HardState, Membership, SnapshotMeta
from shard.storage import StorageCorrupt, StorageError, open_storage
from shard.storage.segments import HEADER_SIZE, list_segments
from shard.storage.snapshots import snapshot_path


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [
        Entry(term, i, EntryKind.NORMAL, f"payload-{i}".encode()) for i in range(first, last + 1)
    ]


def build(directory: Path, last_record: Entry | HardState) -> tuple[Path, int, bytes]:
    """A one-segment WAL with 20 entries and a hard state, then ``last_record`` in its own sync.

    Returns the segment path, the offset where the last record starts, and the file bytes.
    """
    storage, _ = open_storage(directory)
    storage.append(entries(1, 20))
    storage.set_hard_state(HardState(1, "a", 10))
    storage.sync()
    [(_, path)] = list_segments(directory)
    start = path.stat().st_size
    if isinstance(last_record, Entry):
        storage.append([last_record])
    else:
        storage.set_hard_state(last_record)
    storage.sync()
    storage.close()
    return path, start, path.read_bytes()


def reopen(directory: Path, durability: str = "fsync") -> tuple[list[Entry], HardState]:
    storage, recovered = open_storage(directory, durability)
    storage.close()
    return recovered.entries, recovered.hard_state


LAST_ENTRY = Entry(1, 21, EntryKind.NORMAL, b"the last entry, long enough to matter")


def test_cut_at_every_byte_of_the_last_record_recovers_the_records_before(tmp_path: Path) -> None:
    path, start, data = build(tmp_path / "orig", LAST_ENTRY)
    assert reopen(tmp_path / "orig") == ([*entries(1, 20), LAST_ENTRY], HardState(1, "a", 10))
    for cut in range(start, len(data)):
        work = tmp_path / f"cut-{cut}"
        work.mkdir()
        (work / path.name).write_bytes(data[:cut])
        assert reopen(work) == (entries(1, 20), HardState(1, "a", 10)), cut
        assert (work / path.name).stat().st_size == start  # the torn tail was cut off
        # and the log goes on from there
        storage, _ = open_storage(work)
        storage.append([LAST_ENTRY])
        storage.sync()
        storage.close()
        assert reopen(work)[0] == [*entries(1, 20), LAST_ENTRY]


@pytest.mark.parametrize("last", [LAST_ENTRY, HardState(2, "b", 15)], ids=["entry", "hard-state"])
def test_flipped_bit_anywhere_in_the_last_record_is_never_returned(
    tmp_path: Path, last: Entry | HardState
) -> None:
    path, start, data = build(tmp_path / "orig", last)
    work = tmp_path / "work"
    work.mkdir()
    for bit in range((len(data) - start) * 8):
        damaged = bytearray(data)
        damaged[start + bit // 8] ^= 1 << (bit % 8)
        (work / path.name).write_bytes(damaged)
        # durability "none": the recovery rules are the same, without an fsync per case
        assert reopen(work, "none") == (entries(1, 20), HardState(1, "a", 10)), bit
        assert (work / path.name).stat().st_size == start


def test_flipped_bit_in_a_middle_record_refuses_to_open(tmp_path: Path) -> None:
    path, _start, data = build(tmp_path / "orig", LAST_ENTRY)
    # the third entry record: 16-byte segment header, then entries of 32 + 9 or 10 bytes
    middle = HEADER_SIZE + 2 * (32 + 9)
    size = 32 + 9
    assert data[middle : middle + 1] == b"\x01"  # an ENTRY record starts here
    for byte in range(middle, middle + size):
        work = tmp_path / f"flip-{byte}"
        work.mkdir()
        damaged = bytearray(data)
        damaged[byte] ^= 1 << (byte % 8)
        (work / path.name).write_bytes(damaged)
        with pytest.raises(StorageCorrupt) as info:
            reopen(work)
        assert info.value.path == work / path.name
        assert info.value.offset == middle
        assert path.name in str(info.value) and f"offset {middle}" in str(info.value)
        assert (work / path.name).read_bytes() == damaged  # nothing was cut


def test_damage_in_a_segment_that_is_not_the_last_refuses(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=200)
    for i in range(1, 30):
        storage.append(entries(i, i))
        storage.sync()
    storage.close()
    segs = list_segments(tmp_path)
    assert len(segs) >= 3
    first = segs[0][1]
    data = first.read_bytes()
    first.write_bytes(data[:-3])  # its last record is torn, but later segments exist
    with pytest.raises(StorageCorrupt, match="not the last"):
        reopen(tmp_path)


def test_zero_filled_or_garbage_tail_is_a_torn_tail(tmp_path: Path) -> None:
    path, _, data = build(tmp_path, LAST_ENTRY)
    path.write_bytes(data + bytes(4096))
    assert reopen(tmp_path)[0] == [*entries(1, 20), LAST_ENTRY]
    path.write_bytes(data + b"\x01\x00\x00\x00garbage" * 50)
    assert reopen(tmp_path)[0] == [*entries(1, 20), LAST_ENTRY]
    assert path.read_bytes() == data


def test_torn_header_of_the_newest_segment_is_recreated(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=100)
    for i in range(1, 6):
        storage.append(entries(i, i))
        storage.sync()
    storage.close()
    newest = list_segments(tmp_path)[-1][1]
    older = entries(1, 5)
    newest_entries = newest.stat().st_size > HEADER_SIZE
    newest.write_bytes(newest.read_bytes()[:7])
    got, _ = reopen(tmp_path)
    assert newest_entries and got == older[: len(got)] and len(got) < 5
    assert newest.stat().st_size == HEADER_SIZE


def test_missing_segment_refuses(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=100)
    for i in range(1, 10):
        storage.append(entries(i, i))
        storage.sync()
    storage.close()
    segs = list_segments(tmp_path)
    assert len(segs) >= 3
    segs[1][1].unlink()
    with pytest.raises(StorageCorrupt, match="missing"):
        reopen(tmp_path)


def test_wrong_magic_refuses(tmp_path: Path) -> None:
    path, _, data = build(tmp_path, LAST_ENTRY)
    path.write_bytes(b"XXXXXXXX" + data[8:])
    with pytest.raises(StorageCorrupt, match="not a WAL segment"):
        reopen(tmp_path)


def test_crash_after_snapshot_before_compaction_record(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 30))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(12, 1, Membership(("a",))), b"s12")
    storage.close()  # the compaction record was never synced
    storage, recovered = open_storage(tmp_path)
    assert recovered.snapshot is not None and recovered.snapshot.meta.index == 12
    assert recovered.entries == entries(13, 30)
    storage.close()


def test_crash_after_installed_snapshot_before_log_reset(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 30, term=1))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(12, 2, Membership(("a",))), b"from the leader")
    storage.close()
    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == []  # the log did not hold (12, 2): it is discarded
    assert storage.last_index == 12
    storage.close()


def test_a_log_discarded_on_recovery_stays_discarded_after_another_crash(tmp_path: Path) -> None:
    """Found by the storage model soak. Recovery discards a log that does not hold its
    snapshot's (index, term); the node then acts on the shorter log. That decision must be
    durable before it does: else a later snapshot that happens to match a stale entry
    (here (13, 2)) would bring the discarded entries after it back after the next crash."""
    members = Membership(("a",))
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 30, term=2))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(12, 1, members), b"from a leader")  # does not match
    storage.close()  # the compaction record was never synced
    storage, recovered = open_storage(tmp_path)
    assert recovered.entries == [] and storage.last_index == 12
    storage.save_snapshot(SnapshotMeta(13, 2, members), b"from the next leader")
    storage.close()  # again before any sync
    storage, recovered = open_storage(tmp_path)
    assert recovered.snapshot is not None and recovered.snapshot.meta.index == 13
    assert recovered.entries == [] and storage.last_index == 13  # not entries 14..30 again
    storage.close()


def test_log_compacted_past_the_newest_valid_snapshot_refuses(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 30))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(12, 1, Membership(("a",))), b"s12")
    storage.sync()
    storage.close()
    snap = snapshot_path(tmp_path, 12)
    damaged = bytearray(snap.read_bytes())
    damaged[-1] ^= 0x40
    snap.write_bytes(damaged)
    with pytest.raises(StorageCorrupt, match="compacted to"):
        reopen(tmp_path)


def test_compacted_log_without_any_snapshot_refuses(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.append(entries(1, 30))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(12, 1, Membership(("a",))), b"s12")
    storage.sync()
    storage.close()
    snapshot_path(tmp_path, 12).unlink()
    with pytest.raises(StorageCorrupt, match="no snapshot"):
        reopen(tmp_path)


def test_replay_after_deleted_segments_follows_recorded_compaction_decisions(
    tmp_path: Path,
) -> None:
    # Found by the model test: the first kept segment starts with a compaction
    # record whose entry was in a deleted segment, then rewrites a later entry.
    storage, _ = open_storage(tmp_path, segment_bytes=160)
    storage.save_snapshot(SnapshotMeta(1, 1, Membership(("a",))), b"1")
    storage.save_snapshot(SnapshotMeta(2, 1, Membership(("a",))), b"2")
    storage.append(entries(3, 5))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(3, 1, Membership(("a",))), b"3")
    replaced = Entry(1, 5, EntryKind.NORMAL, b"replaced")
    storage.append([replaced])
    storage.save_snapshot(SnapshotMeta(5, 1, Membership(("a",))), b"5")
    storage.sync()
    assert list_segments(tmp_path)[0][0] > 1  # the first segment was deleted
    six = Entry(1, 6, EntryKind.NORMAL, b"six")
    storage.append([six])
    storage.sync()
    storage.close()
    storage, recovered = open_storage(tmp_path, segment_bytes=160)
    assert recovered.entries == [six]
    assert recovered.snapshot is not None and recovered.snapshot.data == b"5"
    storage.close()


def test_log_compacted_to_its_last_entry_with_the_first_segment_deleted(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=160)
    storage.append(entries(1, 4))
    storage.sync()
    storage.save_snapshot(SnapshotMeta(4, 1, Membership(("a",))), b"4")
    storage.sync()
    assert [seq for seq, _ in list_segments(tmp_path)] == [2]
    storage.close()
    storage, recovered = open_storage(tmp_path, segment_bytes=160)
    assert recovered.entries == [] and storage.last_index == 4
    storage.append(entries(5, 5))
    storage.sync()
    storage.close()
    assert reopen(tmp_path)[0] == entries(5, 5)


def test_io_error_while_recovering_is_a_storage_error_and_releases_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path, LAST_ENTRY)

    def broken(self: Path) -> bytes:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "read_bytes", broken)
        with pytest.raises(StorageError, match="I/O error while recovering") as info:
            open_storage(tmp_path)
        assert not isinstance(info.value, StorageCorrupt)
    assert reopen(tmp_path)[0] == [*entries(1, 20), LAST_ENTRY]

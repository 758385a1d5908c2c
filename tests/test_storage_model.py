"""Model-based test: storage against a naive in-memory model, across syncs and crashes.

A crash (closing without syncing, optionally leaving garbage after the last
record) must recover exactly what the model says was made durable.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shard.records import Entry, EntryKind, HardState, Membership, SnapshotMeta
from shard.storage import Storage, open_storage
from shard.storage.segments import list_segments

MEMBERS = Membership(("a", "b", "c"))


class Log:
    """The naive model: a dict of entries above a base (index, term)."""

    def __init__(self) -> None:
        self.base = (0, 0)
        self.entries: dict[int, Entry] = {}

    def copy(self) -> Log:
        other = Log()
        other.base, other.entries = self.base, dict(self.entries)
        return other

    @property
    def last(self) -> int:
        return max(self.entries, default=self.base[0])

    def append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        self.entries = {i: e for i, e in self.entries.items() if i < first}
        self.entries.update((e.index, e) for e in entries)

    def compact(self, index: int, term: int, discard: bool = False) -> None:
        held = self.entries.get(index)
        if held is not None and held.term == term and not discard:
            self.entries = {i: e for i, e in self.entries.items() if i > index}
        elif index > self.base[0]:
            self.entries = {}
        self.base = (index, term)

    def after(self, index: int) -> list[Entry]:
        return [self.entries[i] for i in sorted(self.entries) if i > index]


class StorageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="storage-model-"))
        self.storage: Storage
        self.storage, _ = open_storage(self.dir, "none", segment_bytes=160)
        self.current = Log()
        self.durable = Log()
        self.hard_state = self.durable_hard_state = HardState()
        self.snapshot: tuple[SnapshotMeta, bytes] | None = None
        self.counter = 0

    def teardown(self) -> None:
        self.storage.close()
        shutil.rmtree(self.dir)

    @rule(data=st.data(), count=st.integers(1, 6), term=st.integers(1, 4))
    def append(self, data: st.DataObject, count: int, term: int) -> None:
        first = data.draw(st.integers(self.current.base[0] + 1, self.current.last + 1))
        self.counter += 1
        batch = [
            Entry(term, i, EntryKind.NORMAL, f"{self.counter}:{i}".encode() * (i % 4))
            for i in range(first, first + count)
        ]
        self.storage.append(batch)
        self.current.append(batch)

    @rule(term=st.integers(0, 9), vote=st.sampled_from([None, "a", "b"]), commit=st.integers(0, 50))
    def set_hard_state(self, term: int, vote: str | None, commit: int) -> None:
        self.hard_state = HardState(term, vote, commit)
        self.storage.set_hard_state(self.hard_state)

    @rule()
    def sync(self) -> None:
        self.storage.sync()
        self.durable = self.current.copy()
        self.durable_hard_state = self.hard_state

    @precondition(lambda self: self.current.last > self.current.base[0])
    @rule(data=st.data())
    def local_snapshot(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.current.base[0] + 1, self.current.last))
        self._save(SnapshotMeta(index, self.current.entries[index].term, MEMBERS))

    @rule(data=st.data(), term=st.integers(1, 4), replace=st.booleans())
    def installed_snapshot(self, data: st.DataObject, term: int, replace: bool) -> None:
        index = data.draw(st.integers(self.current.base[0] + 1, self.current.last + 5))
        self._save(SnapshotMeta(index, term, MEMBERS), replace)

    def _save(self, meta: SnapshotMeta, replace: bool = False) -> None:
        payload = f"snapshot {meta.index}/{meta.term}".encode()
        # durable now; its compaction record is buffered until the next sync
        self.storage.save_snapshot(meta, payload, replace_log=replace)
        self.snapshot = (meta, payload)
        self.current.compact(meta.index, meta.term, discard=replace)

    @rule(garbage=st.binary(max_size=80))
    def crash_and_recover(self, garbage: bytes) -> None:
        self.storage.close()
        if garbage:
            newest = list_segments(self.dir)[-1][1]
            with newest.open("ab") as f:
                f.write(garbage)
        self.storage, recovered = open_storage(self.dir, "none", segment_bytes=160)
        expected = self.durable.copy()
        if self.snapshot is not None:
            meta, payload = self.snapshot
            expected.compact(meta.index, meta.term)
            assert recovered.snapshot is not None
            assert (recovered.snapshot.meta, recovered.snapshot.data) == (meta, payload)
        else:
            assert recovered.snapshot is None
        assert recovered.entries == expected.after(expected.base[0])
        assert recovered.hard_state == self.durable_hard_state
        self.current = expected
        self.durable = expected.copy()
        self.hard_state = self.durable_hard_state

    @invariant()
    def last_index_matches(self) -> None:
        assert self.storage.last_index == self.current.last


TestStorageModel = StorageMachine.TestCase
TestStorageModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@pytest.mark.slow
def test_storage_model_soak() -> None:
    run_state_machine_as_test(
        StorageMachine,
        settings=settings(max_examples=1000, stateful_step_count=80, deadline=None),
    )

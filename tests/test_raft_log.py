"""The in-memory log against a naive model (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shard.raft.log import RaftLog
from shard.raft.progress import Inflights
from shard.records import Entry, EntryKind


def entry(index: int, term: int) -> Entry:
    return Entry(term, index, EntryKind.NORMAL, b"%d/%d" % (index, term))


@st.composite
def append_ops(draw: st.DrawFn) -> list[tuple[int, int, list[int]]]:
    """(prev_index offset, prev_term bump, terms of new entries) follower appends."""
    return draw(
        st.lists(
            st.tuples(
                st.integers(0, 6),
                st.integers(0, 1),
                st.lists(st.integers(0, 2), max_size=5),
            ),
            max_size=25,
        )
    )


@settings(max_examples=100, deadline=None)
@given(append_ops(), st.integers(0, 5))
def test_maybe_append_matches_a_naive_model(
    ops: list[tuple[int, int, list[int]]], cut: int
) -> None:
    log = RaftLog()
    model: list[int] = []  # terms, index = position + 1
    term = 1
    for back, bump, incs in ops:
        term += bump
        prev = max(0, len(model) - back)
        prev_term = model[prev - 1] if prev else 0
        if back == 6:
            prev_term += 1  # a mismatching probe
        terms, t = [], max(prev_term, 1)
        for inc in incs:
            t = min(term, t + inc)
            terms.append(max(t, prev_term))
        new = [entry(prev + 1 + i, x) for i, x in enumerate(terms)]
        matches = prev <= len(model) and (model[prev - 1] if prev else 0) == prev_term
        got = log.maybe_append(prev, prev_term, new)
        if not matches:
            assert got is None
            continue
        assert got == prev + len(new)
        for i, e in enumerate(new):
            pos = e.index - 1
            if pos < len(model) and model[pos] == e.term:
                continue
            del model[pos:]
            model.extend(x.term for x in new[i:])
            break
        assert [log.term(i) for i in range(1, log.last_index() + 1)] == model
    # Compaction keeps every later term and the term at the cut.
    log.committed = log.applied = log.stable = log.last_index()
    cut = min(cut, log.last_index())
    before = [log.term(i) for i in range(cut, log.last_index() + 1)]
    log.compact(cut)
    assert [log.term(i) for i in range(cut, log.last_index() + 1)] == before
    assert log.term(cut - 1) is None or cut <= 1


@given(st.lists(st.integers(1, 3), max_size=40))
def test_find_conflict_by_term_returns_last_index_with_term_at_most(terms: list[int]) -> None:
    terms = sorted(terms)
    log = RaftLog()
    log.append([entry(i + 1, t) for i, t in enumerate(terms)])
    for index in range(len(terms) + 1):
        for t in range(0, 4):
            got = log.find_conflict_by_term(index, t)
            want = max((i for i in range(1, index + 1) if terms[i - 1] <= t), default=0)
            assert got == want


def test_inflights_window_counts_messages_and_bytes() -> None:
    w = Inflights(max_count=3, max_bytes=100)
    w.add(5, 10)
    w.add(9, 10)
    assert not w.full()
    w.add(12, 90)
    assert w.full()
    w.free_le(9)
    assert len(w) == 1 and not w.full()
    w.add(20, 15)  # two messages, but 105 bytes: full by bytes
    assert len(w) == 2 and w.full()
    w.free_first_one()
    assert len(w) == 1 and not w.full()

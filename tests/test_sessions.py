"""The client session table: dedup, acknowledgement, deterministic bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shard.sessions import SessionTable, Verdict


def test_new_then_duplicate_returns_the_remembered_result() -> None:
    t = SessionTable()
    assert t.check("c1", 1, 1, index=5) is Verdict.NEW
    t.record("c1", 1, ["r1"])
    assert t.check("c1", 1, 1, index=9) is Verdict.DUPLICATE
    assert t.result("c1", 1) == ["r1"]


def test_ack_below_forgets_results_and_expires_late_retries() -> None:
    t = SessionTable()
    for req in (1, 2, 3):
        assert t.check("c", req, 1, index=req) is Verdict.NEW
        t.record("c", req, req * 10)
    assert t.check("c", 4, 3, index=4) is Verdict.NEW  # acknowledges 1 and 2
    assert sorted(t.sessions["c"].results) == [3]
    assert t.check("c", 1, 3, index=5) is Verdict.EXPIRED
    assert t.check("c", 3, 3, index=6) is Verdict.DUPLICATE


def test_result_cap_counts_the_oldest_as_acknowledged() -> None:
    t = SessionTable(max_results=2)
    for req in (1, 2, 3):
        t.check("c", req, 0, index=req)
        t.record("c", req, req)
    assert sorted(t.sessions["c"].results) == [2, 3]
    assert t.check("c", 1, 0, index=9) is Verdict.EXPIRED


def test_eviction_is_least_recently_active_by_log_index() -> None:
    t = SessionTable(max_clients=2, min_idle_entries=0)
    t.check("a", 1, 1, index=1)
    t.check("b", 1, 1, index=2)
    t.check("a", 2, 1, index=3)  # a is now more recent than b
    t.check("c", 1, 1, index=4)
    assert sorted(t.sessions) == ["a", "c"]


def test_eviction_ties_break_by_client_id_and_replicas_agree() -> None:
    def build(order: list[str]) -> SessionTable:
        t = SessionTable(max_clients=2, min_idle_entries=0)
        for c in order:
            t.check(c, 1, 1, index=7)  # all in one log entry
        return t

    assert build(["x", "y", "z"]).to_plain() == build(["x", "y", "z"]).to_plain()
    assert sorted(build(["x", "y", "z"]).sessions) == ["y", "z"]


def test_plain_form_round_trips_and_is_canonical() -> None:
    t = SessionTable()
    for c, req in (("b", 1), ("a", 2), ("a", 3)):
        t.check(c, req, 0, index=req)
        t.record(c, req, [c, req])
    u = SessionTable()
    u.load_plain(t.to_plain())
    assert u.to_plain() == t.to_plain()
    assert [row[0] for row in t.to_plain()] == ["a", "b"]


def test_evicted_client_returning_is_refused_not_reapplied() -> None:
    t = SessionTable(max_clients=1, min_idle_entries=0)
    assert t.check("a", 1, 1, index=1) is Verdict.NEW
    t.record("a", 1, "r1")
    assert t.check("a", 2, 2, index=2) is Verdict.NEW  # a acknowledged 1
    t.record("a", 2, "r2")
    t.check("b", 1, 1, index=3)  # evicts a
    assert "a" not in t.sessions
    # a retries request 2 (applied before the eviction): refused, not applied again.
    assert t.check("a", 2, 2, index=4) is Verdict.EXPIRED
    assert t.check("a", 2, 2, index=5) is Verdict.EXPIRED
    assert t.check("a", 3, 2, index=6) is Verdict.NEW  # new requests work again


def test_brand_new_client_is_accepted_whatever_its_first_number() -> None:
    t = SessionTable()
    assert t.check("fresh", 7, 0, index=1) is Verdict.NEW
    assert t.check("other", 1, 1, index=2) is Verdict.NEW


def test_recently_active_sessions_are_not_evicted() -> None:
    t = SessionTable(max_clients=2, min_idle_entries=100)
    t.check("a", 1, 1, index=1)
    t.check("b", 1, 1, index=50)
    t.check("c", 1, 1, index=60)  # a has been idle only 59 entries: kept for now
    assert sorted(t.sessions) == ["a", "b", "c"]
    t.check("d", 1, 1, index=120)  # a idle 119 > 100: evicted; b idle 70: kept
    assert sorted(t.sessions) == ["b", "c", "d"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 40), st.integers(0, 45)),  # (request_no, ack_below)
        max_size=120,
    ),
    st.integers(1, 8),
)
def test_forgetting_matches_a_plain_model_for_any_request_order(
    ops: list[tuple[int, int]], max_results: int
) -> None:
    """Acks and the result cap forget exactly what a naive scan would, in any order."""
    t = SessionTable(max_results=max_results)
    assert t.check("c", 1, 0, index=0) is Verdict.NEW  # opens the session (nothing recorded)
    ack = 0
    kept: dict[int, int] = {}  # the model: a dict scanned in full on every change
    for index, (req, ack_below) in enumerate(ops, start=1):
        if ack_below > ack:
            ack = ack_below
            kept = {r: v for r, v in kept.items() if r >= ack}
        if req in kept:
            expected = Verdict.DUPLICATE
        elif req < ack:
            expected = Verdict.EXPIRED
        else:
            expected = Verdict.NEW
        verdict = t.check("c", req, ack_below, index=index)
        assert verdict is expected
        if verdict is Verdict.NEW:
            t.record("c", req, index)
            kept[req] = index
            if len(kept) > max_results:
                oldest = min(kept)
                del kept[oldest]
                ack = max(ack, oldest + 1)
        elif verdict is Verdict.DUPLICATE:
            assert t.result("c", req) == kept[req]
        assert t.sessions["c"].results == kept
        assert t.sessions["c"].ack_below == ack
    restored = SessionTable(max_results=max_results)
    restored.load_plain(t.to_plain())
    assert restored.to_plain() == t.to_plain()

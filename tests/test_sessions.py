"""The client session table: dedup, acknowledgement, deterministic bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shard.sessions import SYSTEM_SESSION, SessionTable, Verdict, session_id, session_label


def test_new_then_duplicate_returns_the_remembered_result() -> None:
    t = SessionTable()
    c1 = t.register("c1", index=4, position=0)
    assert t.check(c1, 1, 1, index=5) is Verdict.NEW
    t.record(c1, 1, ["r1"])
    assert t.check(c1, 1, 1, index=9) is Verdict.DUPLICATE
    assert t.result(c1, 1) == ["r1"]


def test_registration_ids_come_from_the_log_and_never_repeat() -> None:
    t = SessionTable()
    a = t.register("gw", index=7, position=0)
    b = t.register("gw", index=7, position=1)  # a retried registration in the same entry
    c = t.register("gw", index=9, position=0)
    assert len({a, b, c}) == 3 and all(session_label(x) == "gw" for x in (a, b, c))
    assert session_id("gw", 7, 1) == b


def test_unknown_session_is_refused_and_changes_nothing() -> None:
    t = SessionTable()
    before = t.to_plain()
    assert t.check("never-registered", 1, 0, index=3) is Verdict.NO_SESSION
    assert t.check("x@5.0", 2, 2, index=4) is Verdict.NO_SESSION
    assert t.to_plain() == before


def test_ack_below_forgets_results_and_expires_late_retries() -> None:
    t = SessionTable()
    c = t.register("c", index=0, position=0)
    for req in (1, 2, 3):
        assert t.check(c, req, 1, index=req) is Verdict.NEW
        t.record(c, req, req * 10)
    assert t.check(c, 4, 3, index=4) is Verdict.NEW  # acknowledges 1 and 2
    assert sorted(t.sessions[c].results) == [3]
    assert t.check(c, 1, 3, index=5) is Verdict.EXPIRED
    assert t.check(c, 3, 3, index=6) is Verdict.DUPLICATE


def test_result_cap_counts_the_oldest_as_acknowledged() -> None:
    t = SessionTable(max_results=2)
    c = t.register("c", index=0, position=0)
    for req in (1, 2, 3):
        t.check(c, req, 0, index=req)
        t.record(c, req, req)
    assert sorted(t.sessions[c].results) == [2, 3]
    assert t.check(c, 1, 0, index=9) is Verdict.EXPIRED


def test_eviction_is_least_recently_active_by_log_index() -> None:
    # max_clients counts the group's own session, which is never evicted
    t = SessionTable(max_clients=3, min_idle_entries=0)
    a = t.register("a", index=1, position=0)
    b = t.register("b", index=2, position=0)
    t.check(a, 1, 1, index=3)  # a is now more recent than b
    c = t.register("c", index=4, position=0)
    assert sorted(t.sessions) == sorted([SYSTEM_SESSION, a, c]) and b not in t.sessions


def test_eviction_ties_break_by_session_id_and_replicas_agree() -> None:
    def build(labels: list[str]) -> SessionTable:
        t = SessionTable(max_clients=3, min_idle_entries=0)
        for position, label in enumerate(labels):
            t.register(label, index=7, position=position)  # all in one log entry
        return t

    assert build(["x", "y", "z"]).to_plain() == build(["x", "y", "z"]).to_plain()
    assert sorted(build(["x", "y", "z"]).sessions) == sorted([SYSTEM_SESSION, "y@7.1", "z@7.2"])


def test_the_system_session_is_always_there_and_never_evicted() -> None:
    t = SessionTable(max_clients=1, min_idle_entries=0)
    assert t.check(SYSTEM_SESSION, 1, 1, index=1) is Verdict.NEW
    a = t.register("a", index=2, position=0)
    b = t.register("b", index=3, position=0)
    assert sorted(t.sessions) == sorted([SYSTEM_SESSION, b]) and a not in t.sessions
    restored = SessionTable()
    restored.load_plain(SessionTable().to_plain())
    assert SYSTEM_SESSION in restored.sessions


def test_plain_form_round_trips_and_is_canonical() -> None:
    t = SessionTable()
    b = t.register("b", index=1, position=0)
    a = t.register("a", index=1, position=1)
    for c, req in ((b, 1), (a, 2), (a, 3)):
        t.check(c, req, 0, index=req)
        t.record(c, req, [c, req])
    u = SessionTable()
    u.load_plain(t.to_plain())
    assert u.to_plain() == t.to_plain()
    assert [row[0] for row in t.to_plain()] == sorted([a, b, SYSTEM_SESSION])


def test_evicted_session_is_refused_forever_never_reapplied() -> None:
    t = SessionTable(max_clients=2, min_idle_entries=0)
    a = t.register("a", index=1, position=0)
    assert t.check(a, 1, 1, index=2) is Verdict.NEW
    t.record(a, 1, "r1")
    t.register("b", index=3, position=0)  # evicts a
    assert a not in t.sessions
    # a retries request 1 (applied before the eviction), even as if it never had an
    # answer (ack_below 0): refused, not applied again, and a stays unknown.
    assert t.check(a, 1, 0, index=4) is Verdict.NO_SESSION
    assert t.check(a, 2, 2, index=5) is Verdict.NO_SESSION
    assert a not in t.sessions


def test_recently_active_sessions_are_not_evicted() -> None:
    t = SessionTable(max_clients=3, min_idle_entries=100)
    a = t.register("a", index=1, position=0)
    b = t.register("b", index=50, position=0)
    c = t.register("c", index=60, position=0)  # a has been idle only 59 entries: kept for now
    assert sorted(t.sessions) == sorted([SYSTEM_SESSION, a, b, c])
    d = t.register("d", index=120, position=0)  # a idle 119 > 100: evicted; b idle 70: kept
    assert sorted(t.sessions) == sorted([SYSTEM_SESSION, b, c, d])


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
    c = t.register("c", index=0, position=0)
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
        verdict = t.check(c, req, ack_below, index=index)
        assert verdict is expected
        if verdict is Verdict.NEW:
            t.record(c, req, index)
            kept[req] = index
            if len(kept) > max_results:
                oldest = min(kept)
                del kept[oldest]
                ack = max(ack, oldest + 1)
        elif verdict is Verdict.DUPLICATE:
            assert t.result(c, req) == kept[req]
        assert t.sessions[c].results == kept
        assert t.sessions[c].ack_below == ack
    restored = SessionTable(max_results=max_results)
    restored.load_plain(t.to_plain())
    assert restored.to_plain() == t.to_plain()

"""The replicated state machine: seq numbering, sessions, deterministic snapshots."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from shard.engineapp import EngineApplication
from shard.proposals import BadBatch, Proposal, decode_batch, encode_batch
from shard.records import Entry, EntryKind
from shard.sessions import REGISTER, Verdict, session_id
from shard.statemachine import RegisterApplication, ReplicatedStateMachine


def normal(index: int, *props: Proposal, term: int = 1) -> Entry:
    return Entry(term, index, EntryKind.NORMAL, encode_batch(props))


def p(client: str, req: int, cmd: bytes, ack: int | None = None) -> Proposal:
    return Proposal(client, req, req if ack is None else ack, cmd)


def registrations(index: int, *labels: str) -> tuple[Entry, dict[str, str]]:
    """An entry registering ``labels`` and each label's session id."""
    entry = normal(index, *(Proposal(label, REGISTER, 0, b"") for label in labels))
    return entry, {label: session_id(label, index, i) for i, label in enumerate(labels)}


def test_registration_opens_sessions_and_unknown_ones_are_refused() -> None:
    sm = ReplicatedStateMachine(RegisterApplication())
    entry, _ = registrations(1, "gw", "gw")  # a retried registration: two sessions
    outs = sm.apply([entry])
    first, second = session_id("gw", 1, 0), session_id("gw", 1, 1)
    assert [(o.verdict, o.result, o.seq) for o in outs] == [
        (Verdict.REGISTERED, first, 0),
        (Verdict.REGISTERED, second, 0),
    ]
    [refused] = sm.apply([normal(2, p("gw", 1, b"a"))])  # a label is not a session
    assert refused.verdict is Verdict.NO_SESSION and refused.result is None
    [applied] = sm.apply([normal(3, p(first, 1, b"a"))])
    assert applied.verdict is Verdict.NEW and applied.seq == 1
    assert isinstance(sm.app, RegisterApplication) and sm.app.items == [b"a"]


def test_batch_round_trip_and_garbage() -> None:
    batch = [p("c1", 1, b"x"), p("c2", 7, b"\x00", ack=3)]
    assert decode_batch(encode_batch(batch)) == batch
    with pytest.raises(BadBatch):
        decode_batch(b"\x01")


def test_seq_skips_noop_config_registrations_and_duplicates() -> None:
    sm = ReplicatedStateMachine(RegisterApplication())
    opened, ids = registrations(2, "c", "d")
    c, d = ids["c"], ids["d"]
    entries = [
        Entry(1, 1, EntryKind.NOOP, b""),
        opened,
        normal(3, p(c, 1, b"a"), p(d, 1, b"b")),
        Entry(1, 4, EntryKind.CONFIG, b"\x92\x91\xa1a\x90"),
        normal(5, p(c, 1, b"a"), p(c, 2, b"c")),  # a retry of c/1, then c/2
    ]
    outs = sm.apply(entries)
    assert [(o.client_id, o.request_no, o.verdict, o.seq) for o in outs] == [
        ("c", 0, Verdict.REGISTERED, 0),
        ("d", 0, Verdict.REGISTERED, 0),
        (c, 1, Verdict.NEW, 1),
        (d, 1, Verdict.NEW, 2),
        (c, 1, Verdict.DUPLICATE, 1),
        (c, 2, Verdict.NEW, 3),
    ]
    assert outs[4].result == outs[2].result == 1
    assert sm.seq == 3 and sm.applied_index == 5
    assert isinstance(sm.app, RegisterApplication) and sm.app.items == [b"a", b"b", b"c"]


def test_expired_retry_is_not_applied() -> None:
    sm = ReplicatedStateMachine(RegisterApplication())
    opened, ids = registrations(1, "c")
    c = ids["c"]
    sm.apply([opened, normal(2, p(c, 1, b"a")), normal(3, p(c, 2, b"b"))])
    [out] = sm.apply([normal(4, p(c, 1, b"a", ack=2))])
    assert out.verdict is Verdict.EXPIRED and out.result is None
    assert sm.seq == 2


def _run(entries: list[Entry]) -> ReplicatedStateMachine:
    sm = ReplicatedStateMachine(RegisterApplication())
    sm.apply(entries)
    return sm


def test_snapshots_are_deterministic_and_restorable() -> None:
    opened, ids = registrations(1, "c0", "c1", "c2")
    entries = [opened] + [normal(i, p(ids[f"c{i % 3}"], i, b"cmd%d" % i)) for i in range(2, 30)]
    a, b = _run(entries), _run(entries)
    assert a.snapshot() == b.snapshot()
    restored = ReplicatedStateMachine(RegisterApplication())
    restored.restore(a.snapshot()[:])
    assert restored.snapshot() == a.snapshot()
    more = [normal(30, p(ids["c1"], 28, b"dup")), normal(31, p("z", 1, b"new"))]
    assert (
        [(o.verdict, o.seq) for o in restored.apply(more)]
        == [(o.verdict, o.seq) for o in a.apply(more)]
        == [(Verdict.DUPLICATE, 27), (Verdict.NO_SESSION, 0)]
    )
    assert restored.snapshot() == a.snapshot()


def test_a_snapshot_of_another_format_is_refused_clearly() -> None:
    sm = ReplicatedStateMachine(RegisterApplication())
    old = msgpack.packb([1, 0, 0, 0, [], b""], use_bin_type=True)
    with pytest.raises(ValueError, match="snapshot format 1"):
        sm.restore(old)


def test_engine_adapter_numbers_events_by_seq_and_snapshots() -> None:
    sm = ReplicatedStateMachine(EngineApplication())
    opened, ids = registrations(2, "g")
    g = ids["g"]
    create = orjson.dumps(
        {"type": "create_market", "market": "BTC-USD", "tick_size": "1", "lot_size": "1"}
    )
    order = {
        "type": "new_order",
        "market": "BTC-USD",
        "user": "u1",
        "side": "buy",
        "order_type": "limit",
        "price": "100",
        "qty": "2",
        "tif": "gtc",
    }
    outs = sm.apply(
        [
            Entry(1, 1, EntryKind.NOOP, b""),
            opened,
            normal(3, p(g, 1, create), p(g, 2, orjson.dumps(order))),
            normal(4, p(g, 2, orjson.dumps(order))),  # retried: not a second order
        ]
    )[1:]
    assert [o.seq for o in outs] == [1, 2, 2]
    events, levels = outs[1].result
    assert events[0]["type"] == "accepted" and events[0]["seq"] == 2
    assert [list(change) for change in levels] == [["BTC-USD", "buy", "100", "2"]]
    assert outs[2].verdict is Verdict.DUPLICATE and outs[2].result == outs[1].result
    copy = ReplicatedStateMachine(EngineApplication())
    copy.restore(sm.snapshot())
    assert copy.snapshot() == sm.snapshot()
    assert isinstance(copy.app, EngineApplication) and isinstance(sm.app, EngineApplication)
    assert copy.app.digest() == sm.app.digest()

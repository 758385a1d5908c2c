"""The replicated state machine: seq numbering, sessions, deterministic snapshots."""

from __future__ import annotations

import orjson
import pytest

from shard.engineapp import EngineApplication
from shard.proposals import BadBatch, Proposal, decode_batch, encode_batch
from shard.records import Entry, EntryKind
from shard.sessions import Verdict
from shard.statemachine import RegisterApplication, ReplicatedStateMachine


def normal(index: int, *props: Proposal, term: int = 1) -> Entry:
    return Entry(term, index, EntryKind.NORMAL, encode_batch(props))


def p(client: str, req: int, cmd: bytes, ack: int | None = None) -> Proposal:
    return Proposal(client, req, req if ack is None else ack, cmd)


def test_batch_round_trip_and_garbage() -> None:
    batch = [p("c1", 1, b"x"), p("c2", 7, b"\x00", ack=3)]
    assert decode_batch(encode_batch(batch)) == batch
    with pytest.raises(BadBatch):
        decode_batch(b"\x01")


def test_seq_skips_noop_config_and_duplicates() -> None:
    sm = ReplicatedStateMachine(RegisterApplication())
    entries = [
        Entry(1, 1, EntryKind.NOOP, b""),
        normal(2, p("c", 1, b"a"), p("d", 1, b"b")),
        Entry(1, 3, EntryKind.CONFIG, b"\x92\x91\xa1a\x90"),
        normal(4, p("c", 1, b"a"), p("c", 2, b"c")),  # a retry of c/1, then c/2
    ]
    outs = sm.apply(entries)
    assert [(o.client_id, o.request_no, o.verdict, o.seq) for o in outs] == [
        ("c", 1, Verdict.NEW, 1),
        ("d", 1, Verdict.NEW, 2),
        ("c", 1, Verdict.DUPLICATE, 1),
        ("c", 2, Verdict.NEW, 3),
    ]
    assert outs[2].result == outs[0].result == 1
    assert sm.seq == 3 and sm.applied_index == 4
    assert isinstance(sm.app, RegisterApplication) and sm.app.items == [b"a", b"b", b"c"]


def test_expired_retry_is_not_applied() -> None:
    sm = ReplicatedStateMachine(RegisterApplication())
    sm.apply([normal(1, p("c", 1, b"a")), normal(2, p("c", 2, b"b"))])
    [out] = sm.apply([normal(3, p("c", 1, b"a", ack=2))])
    assert out.verdict is Verdict.EXPIRED and out.result is None
    assert sm.seq == 2


def _run(entries: list[Entry]) -> ReplicatedStateMachine:
    sm = ReplicatedStateMachine(RegisterApplication())
    sm.apply(entries)
    return sm


def test_snapshots_are_deterministic_and_restorable() -> None:
    entries = [normal(i, p(f"c{i % 3}", i, b"cmd%d" % i)) for i in range(1, 30)]
    a, b = _run(entries), _run(entries)
    assert a.snapshot() == b.snapshot()
    restored = ReplicatedStateMachine(RegisterApplication())
    restored.restore(a.snapshot()[:])
    assert restored.snapshot() == a.snapshot()
    more = [normal(30, p("c1", 1, b"dup")), normal(31, p("z", 1, b"new"))]
    assert [(o.verdict, o.seq) for o in restored.apply(more)] == [
        (o.verdict, o.seq) for o in a.apply(more)
    ]
    assert restored.snapshot() == a.snapshot()


def test_engine_adapter_numbers_events_by_seq_and_snapshots() -> None:
    sm = ReplicatedStateMachine(EngineApplication())
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
            normal(2, p("g", 1, create), p("g", 2, orjson.dumps(order))),
            normal(3, p("g", 2, orjson.dumps(order))),  # retried: not a second order
        ]
    )
    assert [o.seq for o in outs] == [1, 2, 2]
    events, levels = outs[1].result
    assert events[0]["type"] == "accepted" and events[0]["seq"] == 2
    assert levels == [["BTC-USD", "buy", "100", "2"]]
    assert outs[2].verdict is Verdict.DUPLICATE and outs[2].result == outs[1].result
    copy = ReplicatedStateMachine(EngineApplication())
    copy.restore(sm.snapshot())
    assert copy.snapshot() == sm.snapshot()
    assert isinstance(copy.app, EngineApplication) and isinstance(sm.app, EngineApplication)
    assert copy.app.digest() == sm.app.digest()

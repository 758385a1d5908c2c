"""The replica's per-command fast paths keep the slow paths' meaning.

``decode_rows`` refuses exactly what a proposal batch must not contain,
``apply_rows`` gives the same outcomes as ``apply`` (and leaves the same
snapshot), and the client connection's reply queue still disconnects a client
that stops reading.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from shard.node.applied import AppliedRing
from shard.node.clientserver import _QUEUE, ClientConnection
from shard.node.framing import FrameDecoder
from shard.proposals import BadBatch, Proposal, decode_rows, encode_batch, encode_rows, split_rows
from shard.records import Entry, EntryKind
from shard.sessions import REGISTER, session_id
from shard.statemachine import RegisterApplication, ReplicatedStateMachine


def test_decode_rows_matches_encode_batch() -> None:
    batch = [Proposal("c1", 1, 0, b"x"), Proposal("c2", 9, 4, b"\x00\x01")]
    assert list(decode_rows(encode_batch(batch))) == [("c1", 1, 0, b"x"), ("c2", 9, 4, b"\x00\x01")]


@pytest.mark.parametrize(
    "rows",
    [
        {"not": "an array"},
        [["c", 1, 1]],  # three fields
        [["c", 1, 1, b"x", 5]],  # five fields
        [[7, 1, 1, b"x"]],  # client id not a string
        [["c", True, 1, b"x"]],  # request number a bool
        [["c", 1, "1", b"x"]],  # ack not an int
        [["c", 1, 1, "text"]],  # command not bytes
        ["c"],  # row not an array
    ],
)
def test_decode_rows_refuses_malformed_batches(rows: object) -> None:
    with pytest.raises(BadBatch):
        decode_rows(msgpack.packb(rows, use_bin_type=True))


def _entries() -> list[Entry]:
    def normal(index: int, *rows: tuple[str, int, int, bytes]) -> Entry:
        return Entry(1, index, EntryKind.NORMAL, encode_batch([Proposal(*r) for r in rows]))

    a, b = session_id("a", 1, 0), session_id("b", 1, 1)
    return [
        normal(1, ("a", REGISTER, 0, b""), ("b", REGISTER, 0, b"")),
        normal(2, (a, 1, 0, b"p"), (b, 1, 0, b"q"), (a, 2, 0, b"r")),
        normal(3, (a, 1, 0, b"p"), (b, 2, 2, b"s")),  # a retry, then b acks 1
        normal(4, (b, 1, 2, b"q")),  # b's acknowledged request: expired
        normal(5, ("z@9.0", 5, 3, b"t")),  # a session the group does not know
    ]


def test_apply_rows_equals_apply_and_snapshots_agree() -> None:
    slow = ReplicatedStateMachine(RegisterApplication())
    fast = ReplicatedStateMachine(RegisterApplication())
    outcomes = slow.apply(_entries())
    rows = fast.apply_rows(_entries())
    assert [(o.index, o.client_id, o.request_no, o.verdict, o.result, o.seq) for o in outcomes] == [
        tuple(r) for r in rows
    ]
    assert [r[3].value for r in rows] == [
        "registered",
        "registered",
        "new",
        "new",
        "new",
        "duplicate",
        "new",
        "expired",
        "no_session",
    ]
    assert fast.snapshot() == slow.snapshot()
    assert fast.seq == 4 and fast.applied_index == 5


async def test_reply_queue_delivers_in_order_and_drops_a_slow_reader() -> None:
    left, right = trio.testing.memory_stream_pair()
    conn = ClientConnection(left, "peer")  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.write_loop)
        for rid in range(3):
            conn.replier(rid)({"t": "result", "seq": rid})
        decoder = FrameDecoder()
        received: list[dict[str, object]] = []
        with trio.fail_after(5):
            while len(received) < 3:
                decoder.feed(bytes(await right.receive_some()))
                received.extend(decoder.messages())
        assert [(m["rid"], m["seq"]) for m in received] == [(0, 0), (1, 1), (2, 2)]
        nursery.cancel_scope.cancel()
    for _ in range(_QUEUE + 1):  # nobody writes any more: the queue fills up
        conn.push({"t": "applied"})
    assert conn.overflowed and conn.scope.cancel_called
    conn.close()
    conn.push({"t": "late"})  # after close: silently nobody to send to


async def test_published_items_reach_every_subscriber_complete_and_in_order() -> None:
    """Pushes are packed once for all subscribers; each connection still gets its own
    replies and every applied item, in seq order, as ordinary frames."""
    ring = AppliedRing(capacity=10)
    ring.reset(0)
    streams = [trio.testing.memory_stream_pair() for _ in range(2)]
    conns = [ClientConnection(left, f"peer{i}") for i, (left, _) in enumerate(streams)]  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        for i, conn in enumerate(conns):
            nursery.start_soon(conn.write_loop)
            ring.subscribe(1, conn, conn.replier(f"sub{i}"))
        ring.publish([[1, [{"type": "accepted"}], []], [2, [], [["M", "buy", "1", "2"]]]])
        conns[0].replier(7)({"t": "result", "seq": 2})
        ring.publish([[3, [{"type": "fill"}], []]])
        expected_items = [
            [1, [{"type": "accepted"}], []],
            [2, [], [["M", "buy", "1", "2"]]],
            [3, [{"type": "fill"}], []],
        ]
        for i, (_, right) in enumerate(streams):
            decoder = FrameDecoder()
            received: list[dict[str, object]] = []
            with trio.fail_after(5):
                while len(received) < 3 + (i == 0):
                    decoder.feed(bytes(await right.receive_some()))
                    received.extend(decoder.messages())
            assert received[0] == {"t": "ok", "rid": f"sub{i}"}
            pushed = [m for m in received[1:] if m["t"] == "applied"]
            assert [item for m in pushed for item in m["items"]] == expected_items  # type: ignore[attr-defined]
            if i == 0:  # the reply sits between the two pushes, as it was queued
                assert [m["t"] for m in received[1:]] == ["applied", "result", "applied"]
        nursery.cancel_scope.cancel()


def _reference_decode_rows(data: bytes) -> tuple[tuple[object, ...], ...] | None:
    """The plain-Python definition of a valid batch (None: refused)."""
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=False)
    except Exception:
        return None
    if type(rows) is not tuple:
        return None
    for row in rows:
        if type(row) is not tuple or len(row) != 4:
            return None
        if [type(v) for v in row] != [str, int, int, bytes]:
            return None
    return rows


_scalars = (
    st.text(max_size=3)
    | st.integers(-(2**63), 2**64 - 1)
    | st.booleans()
    | st.binary(max_size=3)
    | st.none()
    | st.floats(allow_nan=False)
)
_rows = st.lists(_scalars, min_size=3, max_size=5) | st.tuples(
    st.text(max_size=3), st.integers(0, 2**40), st.integers(0, 2**40), st.binary(max_size=3)
)


def _decodes_like_the_reference(data: bytes) -> None:
    expected = _reference_decode_rows(data)
    if expected is None:
        with pytest.raises(BadBatch):
            decode_rows(data)
    else:
        assert decode_rows(data) == expected


@given(st.lists(_rows, max_size=4) | _scalars | st.dictionaries(st.text(max_size=2), _scalars))
def test_decode_rows_accepts_exactly_the_valid_batches(value: object) -> None:
    _decodes_like_the_reference(msgpack.packb(value, use_bin_type=True))


@given(st.binary(max_size=40))
def test_decode_rows_refuses_garbage_like_the_reference(data: bytes) -> None:
    _decodes_like_the_reference(data)


def _reference_split(rows: list[list[Any]], max_n: int, max_bytes: int) -> list[list[Any]]:
    """The batching rule as first written: add rows while under both limits."""
    out, start = [], 0
    while start < len(rows):
        end, size = start, 0
        while end < len(rows) and end - start < max_n and size < max_bytes:
            size += len(rows[end][3]) + 32
            end += 1
        out.append(rows[start:end])
        start = end
    return out


@given(
    st.lists(st.integers(0, 300), max_size=60),
    st.integers(1, 10),
    st.integers(1, 2000),
)
def test_split_rows_keeps_order_and_limits(sizes: list[int], max_n: int, max_bytes: int) -> None:
    rows = [["c", i, 0, b"x" * size] for i, size in enumerate(sizes)]
    batches = list(split_rows(rows, max_n, max_bytes))
    assert batches == _reference_split(rows, max_n, max_bytes)
    assert [row for batch in batches for row in batch] == rows
    for batch in batches:
        assert decode_rows(encode_rows(batch)) == tuple(tuple(row) for row in batch)
        assert encode_rows(batch) == msgpack.packb(batch, use_bin_type=True)

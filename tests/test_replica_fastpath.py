"""The replica's per-command fast paths keep the slow paths' meaning.

``decode_rows`` refuses exactly what a proposal batch must not contain,
``apply_rows`` gives the same outcomes as ``apply`` (and leaves the same
snapshot), and the client connection's reply queue still disconnects a client
that stops reading.
"""

from __future__ import annotations

import msgpack
import pytest
import trio
import trio.testing

from shard.node.clientserver import _QUEUE, ClientConnection
from shard.node.framing import FrameDecoder
from shard.proposals import BadBatch, Proposal, decode_rows, encode_batch
from shard.records import Entry, EntryKind
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

    return [
        Entry(1, 1, EntryKind.NOOP, b""),
        normal(2, ("a", 1, 0, b"p"), ("b", 1, 0, b"q"), ("a", 2, 0, b"r")),
        normal(3, ("a", 1, 0, b"p"), ("b", 2, 2, b"s")),  # a retry, then b acks 1
        normal(4, ("b", 1, 2, b"q")),  # b's acknowledged request: expired
        normal(5, ("z", 5, 3, b"t")),  # unknown client with answers before: expired
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
        "new",
        "new",
        "new",
        "duplicate",
        "new",
        "expired",
        "expired",
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

"""The wire encoding of Raft messages round-trips every kind exactly."""

from __future__ import annotations

import pytest

from shard.raft import codec
from shard.raft.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)
from shard.records import Entry, EntryKind, Membership, SnapshotMeta

SAMPLES: list[Message] = [
    RequestVote("a", "b", 3, 10, 2, pre_vote=True, transfer=False),
    VoteResponse("b", "a", 3, True, pre_vote=True),
    AppendEntries(
        "a",
        "b",
        3,
        9,
        2,
        (Entry(3, 10, EntryKind.NORMAL, b"\x00\xff"), Entry(3, 11, EntryKind.CONFIG, b"c")),
        8,
    ),
    AppendResponse("b", "a", 3, False, 9, 7, 2),
    Heartbeat("a", "b", 3, 8, b"ctx"),
    HeartbeatResponse("b", "a", 3, b"ctx"),
    InstallSnapshot("a", "c", 3, SnapshotMeta(7, 2, Membership(("a", "b"), ("c",))), 0, b"s", True),
    SnapshotResponse("c", "a", 3, 7, 1, True),
    TimeoutNow("a", "b", 3),
    ReadIndexRequest("b", "a", 3, b"b:1"),
    ReadIndexResponse("a", "b", 3, b"b:1", 8),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    assert codec.decode(codec.encode(msg)) == msg


def test_tags_are_distinct_per_kind() -> None:
    tags = {codec.to_wire(m)[0] for m in SAMPLES}
    assert len(tags) == len(SAMPLES)


@pytest.mark.parametrize("junk", [b"", b"\xc1", b"\x93\x01\x02\x03", b"\x91\x63"])
def test_garbage_is_a_decode_error(junk: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(junk)

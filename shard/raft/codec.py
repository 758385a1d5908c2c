"""Wire encoding of Raft messages: msgpack, one stable numeric tag per kind.

``encode(message) -> bytes`` and ``decode(bytes) -> message`` are exact
inverses. Tags and field orders are part of the peer protocol: only append.
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

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

_TAGS: dict[type, int] = {
    RequestVote: 1,
    VoteResponse: 2,
    AppendEntries: 3,
    AppendResponse: 4,
    Heartbeat: 5,
    HeartbeatResponse: 6,
    InstallSnapshot: 7,
    SnapshotResponse: 8,
    TimeoutNow: 9,
    ReadIndexRequest: 10,
    ReadIndexResponse: 11,
}
_TYPES = {tag: cls for cls, tag in _TAGS.items()}


class DecodeError(ValueError):
    """The bytes are not a valid Raft message (a misbehaving or foreign peer)."""


def _entry_out(e: Entry) -> list[Any]:
    return [e.term, e.index, int(e.kind), e.data]


def _entry_in(v: list[Any]) -> Entry:
    return Entry(int(v[0]), int(v[1]), EntryKind(v[2]), bytes(v[3]))


def _meta_out(m: SnapshotMeta) -> list[Any]:
    return [m.index, m.term, list(m.membership.voters), list(m.membership.learners)]


def _meta_in(v: list[Any]) -> SnapshotMeta:
    return SnapshotMeta(int(v[0]), int(v[1]), Membership(tuple(v[2]), tuple(v[3])))


def to_wire(m: Message) -> list[Any]:
    """The message as plain msgpack-able values: ``[tag, field, ...]``."""
    out: list[Any] = [_TAGS[type(m)]]
    for field in attrs.fields(type(m)):  # field order is the class's declaration order
        value = getattr(m, field.name)
        if isinstance(m, AppendEntries) and field.name == "entries":
            value = [_entry_out(e) for e in value]
        elif isinstance(m, InstallSnapshot) and field.name == "meta":
            value = _meta_out(value)
        out.append(value)
    return out


def from_wire(v: list[Any]) -> Message:
    try:
        cls = _TYPES[v[0]]
        fields = list(v[1:])
        names = [a.name for a in attrs.fields(cls)]
        if len(fields) != len(names):
            raise DecodeError(f"{cls.__name__}: expected {len(names)} fields")
        kwargs = dict(zip(names, fields, strict=True))
        if cls is AppendEntries:
            kwargs["entries"] = tuple(_entry_in(e) for e in kwargs["entries"])
        elif cls is InstallSnapshot:
            kwargs["meta"] = _meta_in(kwargs["meta"])
        msg: Message = cls(**kwargs)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DecodeError(str(exc)) from exc
    return msg


def encode(m: Message) -> bytes:
    return msgpack.packb(to_wire(m), use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes) -> Message:
    try:
        value = msgpack.unpackb(data, raw=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise DecodeError(str(exc)) from exc
    if not isinstance(value, list) or not value:
        raise DecodeError("not a message")
    return from_wire(value)

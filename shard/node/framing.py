"""Length-prefixed msgpack frames, sans-I/O.

A frame is a 4-byte big-endian payload length followed by a msgpack value.
Both the peer (Raft) links and the shard client protocol use it.

    decoder = FrameDecoder(max_frame=MAX_FRAME)
    decoder.feed(chunk)                 # bytes from the socket, any split
    for message in decoder.messages():  # decoded values, in order
        ...
    sock_bytes = encode_frame(message)

A length over ``max_frame``, or a payload that is not msgpack, raises
:class:`FrameError`: the peer misbehaved, and its connection (only) is closed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

HEADER = 4
# Large enough for a snapshot chunk or a big AppendEntries batch, small enough
# that one peer cannot make us allocate without bound.
MAX_FRAME = 64 * 1024 * 1024
# What a client accepts from its replicas (replies and subscription pushes). One
# command's result may be far larger than any request: a taker sweeping 300,000
# resting orders has as many fills (about 70 MB). Refusing it would make the client
# retry the same remembered result for ever and stall every stream at that seq; the
# client trusts its replicas, and what they send is bounded by what they hold.
MAX_REPLY_FRAME = 1024 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class FrameError(Exception):
    """The byte stream does not follow the framing rules (peer's fault)."""


# msgspec writes and reads the same MessagePack bytes as ``msgpack`` for the
# values frames carry (maps, arrays, str, bin, ints, floats, bools, nil) at two
# to three times the speed, which matters because every submit, reply and
# subscription push crosses here. Both keep their per-call state on the call's
# own stack, so one of each serves the whole process.
_ENCODER = msgspec.msgpack.Encoder()
_DECODER: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()


class Encoded:
    """A message already encoded as a complete frame (header included).

    Queued in place of a message that goes to many connections (a subscription
    push), so it is packed once instead of once per receiver.
    """

    __slots__ = ("frame",)

    def __init__(self, frame: bytes) -> None:
        self.frame = frame


def encode_frame(message: Any) -> bytes:
    """One frame holding ``message`` packed as msgpack (bytes stay bytes)."""
    payload = _ENCODER.encode(message)
    return _LENGTH.pack(len(payload)) + payload


def encode_frames(messages: Iterable[Any]) -> bytes:
    """Several frames concatenated, for one socket write (byte-identical to joining
    :func:`encode_frame` of each); an :class:`Encoded` message is copied as it is."""
    encode, length = _ENCODER.encode, _LENGTH.pack
    parts: list[bytes] = []
    append = parts.append
    for message in messages:
        if type(message) is Encoded:
            append(message.frame)
            continue
        payload = encode(message)
        append(length(len(payload)))
        append(payload)
    return b"".join(parts)


def decode_payload(payload: bytes | bytearray | memoryview) -> Any:
    """Unpack one frame's payload; raises :class:`FrameError` if it is not msgpack."""
    try:
        return _DECODER.decode(payload)
    except Exception as exc:  # DecodeError, or e.g. RecursionError on absurd nesting
        raise FrameError(f"payload is not msgpack: {exc}") from exc


class FrameDecoder:
    """Accumulates received bytes and yields complete frames."""

    __slots__ = ("_buffer", "_max_frame", "_offset")

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._offset = 0
        self._max_frame = max_frame

    def feed(self, data: bytes | bytearray) -> None:
        """Append bytes received from the stream."""
        if self._offset and self._offset == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        self._buffer += data

    def _take(self) -> bytearray | None:
        """The next complete payload (a copy), or None; compacts once the tail is reached."""
        buffer = self._buffer
        offset = self._offset
        available = len(buffer) - offset
        if available >= HEADER:
            (size,) = _LENGTH.unpack_from(buffer, offset)
            if size > self._max_frame:
                raise FrameError(f"frame of {size} bytes exceeds the limit of {self._max_frame}")
            if available >= HEADER + size:
                start = offset + HEADER
                self._offset = end = start + size
                return buffer[start:end]
        if offset > 65536 and offset * 2 > len(buffer):
            del buffer[:offset]  # compact once the consumed prefix dominates
            self._offset = 0
        return None

    def payloads(self) -> Iterator[bytes]:
        """Complete frame payloads received so far; keeps any partial tail."""
        while (payload := self._take()) is not None:
            yield bytes(payload)

    def messages(self) -> Iterator[Any]:
        """Complete frames decoded from msgpack (no intermediate ``bytes`` copy)."""
        while (payload := self._take()) is not None:
            yield decode_payload(payload)

    def pending(self) -> int:
        """Bytes buffered but not yet returned as a frame."""
        return len(self._buffer) - self._offset

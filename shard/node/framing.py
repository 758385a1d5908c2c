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

from collections.abc import Iterator
from typing import Any

import msgpack

HEADER = 4
# Large enough for a snapshot chunk or a big AppendEntries batch, small enough
# that one peer cannot make us allocate without bound.
MAX_FRAME = 64 * 1024 * 1024


class FrameError(Exception):
    """The byte stream does not follow the framing rules (peer's fault)."""


def encode_frame(message: Any) -> bytes:
    """One frame holding ``message`` packed as msgpack (bytes stay bytes)."""
    payload: bytes = msgpack.packb(message, use_bin_type=True)
    return len(payload).to_bytes(HEADER, "big") + payload


def encode_frames(messages: list[Any]) -> bytes:
    """Several frames concatenated, for one socket write."""
    return b"".join(encode_frame(m) for m in messages)


def decode_payload(payload: bytes | memoryview) -> Any:
    """Unpack one frame's payload; raises :class:`FrameError` if it is not msgpack."""
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"payload is not msgpack: {exc}") from exc


class FrameDecoder:
    """Accumulates received bytes and yields complete frames."""

    __slots__ = ("_buffer", "_max_frame", "_offset")

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._offset = 0
        self._max_frame = max_frame

    def feed(self, data: bytes) -> None:
        """Append bytes received from the stream."""
        if self._offset and self._offset == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        self._buffer += data

    def payloads(self) -> Iterator[bytes]:
        """Complete frame payloads received so far; keeps any partial tail."""
        buffer = self._buffer
        while True:
            available = len(buffer) - self._offset
            if available < HEADER:
                break
            size = int.from_bytes(buffer[self._offset : self._offset + HEADER], "big")
            if size > self._max_frame:
                raise FrameError(f"frame of {size} bytes exceeds the limit of {self._max_frame}")
            if available < HEADER + size:
                break
            start = self._offset + HEADER
            self._offset = start + size
            yield bytes(buffer[start : self._offset])
        if self._offset > 65536 and self._offset * 2 > len(buffer):
            del buffer[: self._offset]  # compact once the consumed prefix dominates
            self._offset = 0

    def messages(self) -> Iterator[Any]:
        """Complete frames decoded from msgpack."""
        for payload in self.payloads():
            yield decode_payload(payload)

    def pending(self) -> int:
        """Bytes buffered but not yet returned as a frame."""
        return len(self._buffer) - self._offset

"""Frames survive any split of the byte stream; oversized or garbage frames are refused."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shard.node.framing import FrameDecoder, FrameError, encode_frame, encode_frames

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@given(st.lists(values, max_size=8), st.lists(st.integers(1, 50), max_size=30))
def test_any_split_round_trips(messages: list[Any], cuts: list[int]) -> None:
    stream = encode_frames(messages)
    decoder = FrameDecoder()
    got: list[Any] = []
    position = 0
    for cut in cuts:
        decoder.feed(stream[position : position + cut])
        position += cut
        got.extend(decoder.messages())
    decoder.feed(stream[position:])
    got.extend(decoder.messages())
    assert got == messages
    assert decoder.pending() == 0


def test_header_is_big_endian_length() -> None:
    frame = encode_frame({"t": "status", "rid": 1})
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4


def test_oversized_frame_refused_before_body_arrives() -> None:
    decoder = FrameDecoder(max_frame=100)
    decoder.feed((101).to_bytes(4, "big"))
    with pytest.raises(FrameError, match="exceeds"):
        list(decoder.messages())


def test_garbage_payload_refused() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00\x00\x01\xc1")  # 0xc1 is never used in msgpack
    with pytest.raises(FrameError, match="not msgpack"):
        list(decoder.messages())


def test_many_frames_compact_buffer() -> None:
    decoder = FrameDecoder()
    blob = encode_frame(b"x" * 1000)
    for _ in range(300):
        decoder.feed(blob + blob[:10])
        assert [len(m) for m in decoder.messages()] == [1000]
        decoder.feed(blob[10:])
        assert [len(m) for m in decoder.messages()] == [1000]
    assert decoder.pending() == 0


def test_frames_after_an_unpackable_message_are_clean() -> None:
    """The reused packer drops a half-packed message; the next frames are intact."""
    with pytest.raises(TypeError):
        encode_frame({"t": "result", "events": [object()]})
    with pytest.raises(TypeError):
        encode_frames([{"t": "ok"}, object()])
    decoder = FrameDecoder()
    decoder.feed(encode_frames([{"t": "ok", "rid": 1}, [1, b"x"]]) + encode_frame("z"))
    assert list(decoder.messages()) == [{"t": "ok", "rid": 1}, [1, b"x"], "z"]


@given(values)
def test_frames_are_exactly_what_msgpack_writes_and_reads(value: Any) -> None:
    """The wire format is plain MessagePack: byte-identical to the msgpack library
    (use_bin_type) and decoded to the same values, so peers and tools agree."""
    reference = msgpack.packb(value, use_bin_type=True)
    frame = encode_frame(value)
    assert frame[4:] == reference
    assert encode_frames([value, value]) == frame + frame
    decoder = FrameDecoder()
    decoder.feed(frame)
    assert list(decoder.messages()) == [msgpack.unpackb(reference, raw=False)]

"""The WAL's on-disk record format: framing, checksums, and scanning a segment.

Every record is a 32-byte header followed by a payload::

    offset size field
         0    1 type            RecordType
         1    1 kind            EntryKind (entry); 1 = has a vote (hard state);
                                1 = entries after it discarded (compact)
         2    2 flags           always 0 (reserved)
         4    4 length          payload length in bytes
         8    8 term            entry term / hard-state term / compaction term
        16    8 index           entry index / hard-state commit / truncate or compact index
        24    4 payload_crc     zlib.crc32 of the payload
        28    4 header_crc      zlib.crc32 of bytes 0..28

All integers are little-endian. Two CRC-32s rather than one: the header CRC
lets a reader trust ``length`` before it uses it, and lets the torn-tail check
recognise a valid record at any offset in O(1). CRC-32 (``zlib.crc32``, the
standard library's fastest checksum, running in C) detects every single-bit
error and every burst of up to 32 bits; crc32c is not in the standard
library, and a cryptographic hash would cost more for no gain against the
failures we defend against (torn writes, bit rot), not against an attacker.
"""

from __future__ import annotations

import enum
import re
import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import attrs

from shard.records import Entry, EntryKind, HardState

HEADER_SIZE = 32
_PREFIX = struct.Struct("<BBHIQQI")  # everything the header CRC covers (28 bytes)
_CRC = struct.Struct("<I")
_HEADER = struct.Struct("<BBHIQQII")
_NO_VOTE, _HAS_VOTE = 0, 1
# kind of a COMPACT record: the writer's decision, so replay need not re-derive it
COMPACT_KEEP, COMPACT_DISCARD = 0, 1
# Largest payload a reader accepts; anything bigger is a damaged length field.
MAX_PAYLOAD = 1 << 30


class RecordType(enum.IntEnum):
    """What a record means to recovery; the values are part of the format."""

    ENTRY = 1  # a log entry
    HARD_STATE = 2  # term, vote, commit; the last valid one wins
    TRUNCATE = 3  # drop the entries with index >= the record's index
    COMPACT = 4  # the log now starts after (index, term); kind: entries after it kept or not


_ENTRY = int(RecordType.ENTRY)

# A header candidate: a known type, a small kind, zero flags. Used to find
# records after a damaged one without computing a CRC at every offset.
_CANDIDATE = re.compile(rb"(?=[\x01-\x04][\x00-\x02]\x00\x00)")


class Record(NamedTuple):
    """One valid WAL record and the offset it starts at."""

    type: int  # a RecordType value
    kind: int
    term: int
    log_index: int  # entry index, hard-state commit, truncate or compact index
    payload: bytes
    offset: int


def encode(
    out: bytearray, rtype: RecordType, kind: int, term: int, index: int, payload: bytes
) -> int:
    """Append one framed record to ``out``; return its size in bytes."""
    prefix = _PREFIX.pack(rtype, kind, 0, len(payload), term, index, zlib.crc32(payload))
    out += prefix
    out += _CRC.pack(zlib.crc32(prefix))
    out += payload
    return HEADER_SIZE + len(payload)


def encode_entries(out: bytearray, entries: Sequence[Entry]) -> None:
    """Append ENTRY records for ``entries`` to ``out``: the hot path of group commit.

    Raises ``ValueError`` unless the indexes are contiguous.
    """
    pack, pack_crc, crc32 = _PREFIX.pack, _CRC.pack, zlib.crc32
    expected = entries[0].index if entries else 0
    for entry in entries:
        if entry.index != expected:
            raise ValueError(f"entries not contiguous: {entry.index} where {expected} was due")
        expected += 1
        data = entry.data
        if len(data) > MAX_PAYLOAD:
            raise ValueError(f"entry {entry.index} is {len(data)} bytes, over {MAX_PAYLOAD}")
        prefix = pack(_ENTRY, entry.kind, 0, len(data), entry.term, entry.index, crc32(data))
        out += prefix
        out += pack_crc(crc32(prefix))
        out += data


def encode_hard_state(out: bytearray, hs: HardState) -> int:
    if hs.vote is None:
        return encode(out, RecordType.HARD_STATE, _NO_VOTE, hs.term, hs.commit, b"")
    vote = hs.vote.encode()
    return encode(out, RecordType.HARD_STATE, _HAS_VOTE, hs.term, hs.commit, vote)


_KINDS = {int(kind): kind for kind in EntryKind}


def decode_entry(record: Record) -> Entry:
    """The entry a valid ENTRY record holds; ``ValueError`` for an unknown kind."""
    kind = _KINDS.get(record.kind)
    if kind is None:
        raise ValueError(f"unknown entry kind {record.kind}")
    return Entry(record.term, record.log_index, kind, record.payload)


def decode_hard_state(record: Record) -> HardState:
    if record.kind == _NO_VOTE:
        if record.payload:
            raise ValueError("hard state without a vote has a payload")
        return HardState(term=record.term, vote=None, commit=record.log_index)
    if record.kind == _HAS_VOTE:
        return HardState(term=record.term, vote=record.payload.decode(), commit=record.log_index)
    raise ValueError(f"unknown hard-state kind {record.kind}")


_VALID_TYPES = frozenset(int(t) for t in RecordType)


def _record_at(buf: bytes, offset: int) -> Record | None:
    """The valid record at ``offset``, or None if it is incomplete or fails a check."""
    start = offset + HEADER_SIZE
    if start > len(buf):
        return None
    rtype, kind, flags, length, term, index, pcrc, hcrc = _HEADER.unpack_from(buf, offset)
    if zlib.crc32(buf[offset : start - 4]) != hcrc:
        return None
    if rtype not in _VALID_TYPES or flags != 0 or length > MAX_PAYLOAD:
        return None
    stop = start + length
    if stop > len(buf):
        return None
    payload = buf[start:stop]
    if zlib.crc32(payload) != pcrc:
        return None
    return Record(rtype, kind, term, index, payload, offset)


def valid_record_after(buf: bytes, offset: int) -> int | None:
    """The offset of the first valid record starting after ``offset``, if any."""
    for match in _CANDIDATE.finditer(buf, offset + 1):
        if _record_at(buf, match.start()) is not None:
            return match.start()
    return None


@attrs.frozen
class Scan:
    """The valid records of a buffer and how the buffer ended.

    ``bad_offset`` is None when the buffer ended cleanly after a record.
    Otherwise the record at ``bad_offset`` is incomplete or fails a checksum,
    and ``valid_after`` is the offset of a valid record found after it: when
    there is one the damage is in the middle (corruption), otherwise it is a
    torn tail.
    """

    records: list[Record]
    valid_end: int
    bad_offset: int | None = None
    valid_after: int | None = None


def scan(buf: bytes, offset: int) -> Scan:
    """Read the valid records from ``offset`` on, stopping at the first damaged one."""
    records: list[Record] = []
    append = records.append
    record_at = _record_at
    size = len(buf)
    while offset < size:
        record = record_at(buf, offset)
        if record is None:
            return Scan(records, offset, offset, valid_record_after(buf, offset))
        append(record)
        offset += HEADER_SIZE + len(record.payload)
    return Scan(records, offset)

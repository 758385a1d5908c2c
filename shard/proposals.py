"""The payload of a NORMAL log entry: a batch of client proposals.

Each proposal is ``(client_id, request_no, ack_below, command)``: the
session key that makes retries idempotent, the lowest request number the
client still waits for (everything below may be forgotten), and the
command's bytes (JSON for the engine). A batch is a msgpack array of
4-element arrays, so one Raft entry carries many client commands.

The leader starts each batch with a stamp row, ``("", STAMP, time, b"")``:
its wall-clock time in microseconds, when the trades of the batch happened
(:mod:`shard.tradetimes`). Client request numbers count from 1 and a
registration's is 0, so no client can send a stamp.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final, TypeVar

import attrs
import msgspec


@attrs.frozen
class Proposal:
    client_id: str
    request_no: int
    ack_below: int
    command: bytes


# A proposal as decoded from an entry: (client_id, request_no, ack_below, command).
ProposalRow = tuple[str, int, int, bytes]
_Row = TypeVar("_Row", bound=Sequence[Any])


class BadBatch(ValueError):
    """Entry data that is not a proposal batch (a bug or a corrupt log)."""


STAMP: Final = -1  # the request number of a stamp row


def stamp_row(now: int) -> list[Any]:
    """The row that heads a batch sequenced at ``now`` (µs since the epoch)."""
    return ["", STAMP, now, b""]


_ENCODER = msgspec.msgpack.Encoder()
_ROW_OVERHEAD = 32  # bytes counted per proposal on top of its command, for batch limits


def encode_batch(proposals: Sequence[Proposal]) -> bytes:
    return encode_rows([[p.client_id, p.request_no, p.ack_below, p.command] for p in proposals])


def encode_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """Entry data for ``[client_id, request_no, ack_below, command]`` rows: the same
    bytes as ``msgpack.packb(rows, use_bin_type=True)``, without an object per row."""
    return _ENCODER.encode(rows)


def split_rows(rows: list[_Row], max_commands: int, max_bytes: int) -> Iterator[list[_Row]]:
    """Consecutive batches of ``rows``: at most ``max_commands`` each, and closed by the
    first row that brings the commands (plus a fixed overhead each) to ``max_bytes``.

    Rows are in any sequence form with the command bytes last.
    """
    start, total = 0, len(rows)
    while start < total:
        end = min(total, start + max_commands)
        commands = [row[-1] for row in rows[start:end]]
        if sum(map(len, commands)) + _ROW_OVERHEAD * len(commands) >= max_bytes:
            size, end = 0, start  # the byte limit binds: find where, row by row
            for command in commands:
                size += len(command) + _ROW_OVERHEAD
                end += 1
                if size >= max_bytes:
                    break
        yield rows[start:end]
        start = end


def decode_batch(data: bytes) -> list[Proposal]:
    return [Proposal(*row) for row in decode_rows(data)]


_ROWS_DECODER = msgspec.msgpack.Decoder(tuple[ProposalRow, ...])


def decode_rows(data: bytes) -> tuple[ProposalRow, ...]:
    """The batch as ``(client_id, request_no, ack_below, command)`` tuples (no objects).

    Validates every field's type as :func:`decode_batch` does, so a corrupt
    entry is refused the same way on every replica: an array of 4-element
    arrays of exactly str, int (not bool), int, bin. msgspec checks the shape
    while it decodes, in C, instead of a Python loop over the rows afterwards.
    """
    try:
        return _ROWS_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadBatch(str(exc)) from exc

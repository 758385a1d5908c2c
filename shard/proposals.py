"""The payload of a NORMAL log entry: a batch of client proposals.

Each proposal is ``(client_id, request_no, ack_below, command)``: the
session key that makes retries idempotent, the lowest request number the
client still waits for (everything below may be forgotten), and the
command's bytes (JSON for the engine). A batch is a msgpack array of
4-element arrays, so one Raft entry carries many client commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import attrs
import msgpack


@attrs.frozen
class Proposal:
    client_id: str
    request_no: int
    ack_below: int
    command: bytes


# A proposal as decoded from an entry: (client_id, request_no, ack_below, command).
ProposalRow = tuple[str, int, int, bytes]


class BadBatch(ValueError):
    """Entry data that is not a proposal batch (a bug or a corrupt log)."""


def encode_batch(proposals: Sequence[Proposal]) -> bytes:
    rows = [[p.client_id, p.request_no, p.ack_below, p.command] for p in proposals]
    return msgpack.packb(rows, use_bin_type=True)  # type: ignore[no-any-return]


def decode_batch(data: bytes) -> list[Proposal]:
    return [Proposal(*row) for row in decode_rows(data)]


def decode_rows(data: bytes) -> tuple[ProposalRow, ...]:
    """The batch as ``(client_id, request_no, ack_below, command)`` tuples (no objects).

    Validates every field's type as :func:`decode_batch` does, so a corrupt
    entry is refused the same way on every replica.
    """
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise BadBatch(str(exc)) from exc
    if type(rows) is not tuple:
        raise BadBatch(f"a batch is an array, not {type(rows).__name__}")
    for row in rows:
        if (
            type(row) is not tuple
            or len(row) != 4
            or type(row[0]) is not str
            or type(row[1]) is not int
            or type(row[2]) is not int
            or type(row[3]) is not bytes
        ):
            raise BadBatch(f"not a proposal: {row!r:.200}")
    return cast(tuple[ProposalRow, ...], rows)

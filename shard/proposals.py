"""The payload of a NORMAL log entry: a batch of client proposals.

Each proposal is ``(client_id, request_no, ack_below, command)``: the
session key that makes retries idempotent, the lowest request number the
client still waits for (everything below may be forgotten), and the
command's bytes (JSON for the engine). A batch is a msgpack array of
4-element arrays, so one Raft entry carries many client commands.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import msgpack


@attrs.frozen
class Proposal:
    client_id: str
    request_no: int
    ack_below: int
    command: bytes


class BadBatch(ValueError):
    """Entry data that is not a proposal batch (a bug or a corrupt log)."""


def encode_batch(proposals: Sequence[Proposal]) -> bytes:
    rows = [[p.client_id, p.request_no, p.ack_below, p.command] for p in proposals]
    return msgpack.packb(rows, use_bin_type=True)  # type: ignore[no-any-return]


def decode_batch(data: bytes) -> list[Proposal]:
    try:
        rows = msgpack.unpackb(data, raw=False)
        return [Proposal(str(c), int(r), int(a), bytes(cmd)) for c, r, a, cmd in rows]
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise BadBatch(str(exc)) from exc

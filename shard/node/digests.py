"""Digest agreement: replicas compare state digests at the same log index.

Every replica computes a digest of its state machine snapshot at the same
deterministic points (applied index a multiple of the snapshot interval,
and on an explicit snapshot request). The leader sends its digests to the
followers; a follower compares them with its own at the same index. A
mismatch means the replicas applied the same log and reached different
states (a non-deterministic engine, a corrupt snapshot, a bug): the follower
marks itself diverged and stops serving, since whatever it would answer
could be wrong.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import attrs

_KEEP = 64


def state_digest(snapshot: bytes) -> str:
    """Hex digest of a state machine snapshot (deterministic bytes by contract)."""
    return hashlib.blake2b(snapshot, digest_size=16).hexdigest()


@attrs.frozen
class Checkpoint:
    index: int
    seq: int
    digest: str


def digest_message(checkpoint: Checkpoint) -> dict[str, Any]:
    """The peer message a leader sends with each of its checkpoints."""
    return {"t": "digest", **attrs.asdict(checkpoint)}


def parse_digest_message(payload: dict[str, Any]) -> Checkpoint | None:
    """The checkpoint of a leader's digest message; None if it is not a valid one."""
    if payload.get("t") != "digest":
        return None
    try:
        return Checkpoint(int(payload["index"]), int(payload["seq"]), str(payload["digest"]))
    except (KeyError, TypeError, ValueError):
        return None


@attrs.frozen
class Divergence:
    index: int
    seq: int
    mine: str
    leader: str


class DigestBook:
    """Own checkpoints and the leader's, bounded; reports the first divergence."""

    def __init__(self) -> None:
        self._own: OrderedDict[int, Checkpoint] = OrderedDict()
        self._leader: OrderedDict[int, Checkpoint] = OrderedDict()
        self.latest: Checkpoint | None = None
        self.divergence: Divergence | None = None
        self.agreed = 0  # comparisons that matched

    def record_own(self, checkpoint: Checkpoint) -> Divergence | None:
        _put(self._own, checkpoint)
        self.latest = checkpoint
        return self._compare(checkpoint.index)

    def record_leader(self, checkpoint: Checkpoint) -> Divergence | None:
        _put(self._leader, checkpoint)
        return self._compare(checkpoint.index)

    def own(self, index: int) -> Checkpoint | None:
        return self._own.get(index)

    def _compare(self, index: int) -> Divergence | None:
        mine, theirs = self._own.get(index), self._leader.get(index)
        if mine is None or theirs is None or self.divergence is not None:
            return None
        if mine.digest == theirs.digest and mine.seq == theirs.seq:
            self.agreed += 1
            return None
        self.divergence = Divergence(index, mine.seq, mine.digest, theirs.digest)
        return self.divergence


def _put(book: OrderedDict[int, Checkpoint], checkpoint: Checkpoint) -> None:
    book[checkpoint.index] = checkpoint
    while len(book) > _KEEP:
        book.popitem(last=False)

"""Tunables of the consensus core; all durations are in ticks of the owner's clock."""

from __future__ import annotations

from typing import Protocol

import attrs


class RandomSource(Protocol):
    """The randomness the core needs (``random.Random`` satisfies it)."""

    def randrange(self, start: int, stop: int) -> int: ...


@attrs.frozen
class RaftConfig:
    node_id: str
    # A follower campaigns after a random timeout in [election_tick, 2 * election_tick).
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True  # thesis §9.6: a partitioned node cannot inflate terms
    check_quorum: bool = True  # leader steps down without a live majority; voters honour leases
    max_msg_entries: int = 256  # entries per AppendEntries
    max_msg_bytes: int = 1 << 20  # payload bytes per AppendEntries (at least one entry)
    max_inflight: int = 32  # AppendEntries in flight per follower in REPLICATE state
    max_inflight_bytes: int = 16 << 20
    max_uncommitted_entries: int = 100_000  # flow control: refuse proposals beyond this
    max_apply_entries: int = 4096  # committed entries handed out per Ready
    snapshot_chunk_bytes: int = 512 << 10
    snapshot_retransmit_ticks: int = 5  # resend an unanswered snapshot chunk after this
    learner_catchup_lag: int = 64  # a learner is promotable once this close to the leader
    # Planted bug for the simulator's self-test: count replicas of entries from
    # older terms (the Figure 8 hazard of §5.4.2). Never enable outside tests.
    unsafe_commit_old_terms: bool = False

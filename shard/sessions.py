"""The client session table (Raft thesis §6.3): exactly-once application.

Every proposal carries ``(client_id, request_no)``. The table remembers the
result of each applied request until the client acknowledges it (its
``ack_below`` rises above the request number); a retry of a remembered
request gets the remembered result instead of being applied again, and a
request below ``ack_below`` is known to be finished and is never applied.

The table is replicated state: every decision depends only on the log, so
all replicas keep, forget and evict exactly the same sessions. It is bounded:
beyond ``max_clients`` sessions the least recently active one (by the log
index of its latest proposal, ties broken by client id) is evicted, but only
once it has been idle for ``min_idle_entries`` log entries, so a client that
is still retrying is never forgotten (the table may then exceed
``max_clients`` until sessions go idle). At most ``max_results`` results are
remembered per client (the oldest is forgotten and counts as acknowledged).

A proposal from an unknown client whose ``ack_below`` is above 1 must come
from an evicted session (the client had answers before): it is refused as
EXPIRED rather than risk applying a retry twice, and the session restarts
above it. A client that stays silent longer than ``min_idle_entries`` and
then retries a request may therefore get EXPIRED (a "session expired"
error), never a second application, except for a request sent before any
acknowledgement (``ack_below`` <= 1), which the table cannot tell from a
new client's first request.
"""

from __future__ import annotations

import enum
from heapq import heappop, heappush
from typing import Any

import attrs


class Verdict(enum.Enum):
    NEW = "new"  # apply it
    DUPLICATE = "duplicate"  # applied before: here is the remembered result
    EXPIRED = "expired"  # applied and acknowledged long ago (a very late retry): drop it


# Module constants: an enum member lookup on the class costs more than the check itself.
_NEW, _DUPLICATE, _EXPIRED = Verdict.NEW, Verdict.DUPLICATE, Verdict.EXPIRED


@attrs.define
class Session:
    last_active: int  # log index of the client's latest proposal
    ack_below: int = 0
    results: dict[int, Any] = attrs.field(factory=dict)  # request_no -> result
    # A min-heap of exactly the keys of ``results``: forgetting everything below a
    # new ack (or the oldest result) costs O(log n) per result instead of a scan of
    # the whole window on every proposal.
    order: list[int] = attrs.field(factory=list, eq=False, repr=False)


class SessionTable:
    """Deterministic, bounded table of client sessions."""

    def __init__(
        self, *, max_clients: int = 10_000, max_results: int = 1_000, min_idle_entries: int = 10_000
    ) -> None:
        self.max_clients = max_clients
        self.max_results = max_results
        self.min_idle_entries = min_idle_entries
        self.sessions: dict[str, Session] = {}

    def check(self, client_id: str, request_no: int, ack_below: int, index: int) -> Verdict:
        """Classify a proposal found in the log entry at ``index``; records the ack."""
        s = self.sessions.get(client_id)
        if s is None:
            s = self.sessions[client_id] = Session(last_active=index)
            self._evict_beyond_limit(keep=client_id, index=index)
            if ack_below > 1:
                # The client has had answers before, so its session existed and was
                # evicted: we cannot tell whether this request was applied. Refuse it
                # (and anything up to it); later request numbers work again.
                s.ack_below = max(ack_below, request_no + 1)
                return Verdict.EXPIRED
        if index > s.last_active:
            s.last_active = index
        acked = s.ack_below
        results = s.results
        if ack_below > acked:
            s.ack_below = acked = ack_below
            order = s.order
            while order and order[0] < ack_below:
                del results[heappop(order)]
        if request_no in results:
            return _DUPLICATE
        if request_no < acked:
            return _EXPIRED
        return _NEW

    def result(self, client_id: str, request_no: int) -> Any:
        return self.sessions[client_id].results[request_no]

    def record(self, client_id: str, request_no: int, result: Any) -> None:
        s = self.sessions[client_id]
        results = s.results
        if request_no not in results:
            heappush(s.order, request_no)
        results[request_no] = result
        if len(results) > self.max_results:
            oldest = heappop(s.order)
            del results[oldest]
            s.ack_below = max(s.ack_below, oldest + 1)

    def _evict_beyond_limit(self, keep: str, index: int) -> None:
        while len(self.sessions) > self.max_clients:
            victim = min(
                (c for c in self.sessions if c != keep),
                key=lambda c: (self.sessions[c].last_active, c),
            )
            if self.sessions[victim].last_active > index - self.min_idle_entries:
                return  # everyone is recent enough that a retry may still come
            del self.sessions[victim]

    def __len__(self) -> int:
        return len(self.sessions)

    # -- snapshot --------------------------------------------------------

    def to_plain(self) -> list[Any]:
        """Msgpack-ready, canonical (sorted) form; equal tables give equal values."""
        return [
            [c, s.last_active, s.ack_below, [[r, s.results[r]] for r in sorted(s.results)]]
            for c, s in sorted(self.sessions.items())
        ]

    def load_plain(self, rows: list[Any]) -> None:
        self.sessions = {}
        for c, last, ack, results in rows:
            kept = {int(r): res for r, res in results}
            self.sessions[str(c)] = Session(int(last), int(ack), kept, sorted(kept))

"""The client session table (Raft thesis §6.3): exactly-once application.

A client first *registers*: it proposes a registration (request number 0,
see :data:`REGISTER`) and gets back a session id that the log itself
assigns (``label@index.position`` of the registration in the log), so two
registrations never share an id, not even a delayed retry of one. Every
later proposal carries ``(session_id, request_no)``. The table remembers
the result of each applied request until the client acknowledges it (its
``ack_below`` rises above the request number); a retry of a remembered
request gets the remembered result instead of being applied again, and a
request below ``ack_below`` is known to be finished and is never applied.

The table is replicated state: every decision depends only on the log, so
all replicas keep, forget and evict exactly the same sessions. It is bounded:
beyond ``max_clients`` sessions the least recently active one (by the log
index of its latest proposal, ties broken by session id) is evicted, but only
once it has been idle for ``min_idle_entries`` log entries, so a client that
is still retrying is rarely forgotten (the table may then exceed
``max_clients`` until sessions go idle). At most ``max_results`` results are
remembered per client (the oldest is forgotten and counts as acknowledged).

A proposal for a session the table does not know (evicted, or never
registered) is refused as NO_SESSION and changes nothing. Since ids are
never reused, such a proposal can never be a retry applied a second time:
the client registers again and learns that earlier unanswered requests have
an unknown outcome. The group's own proposals (creating the market) use
:data:`SYSTEM_SESSION`, which every table holds from the start and never
evicts.
"""

from __future__ import annotations

import enum
from heapq import heapify, heappop, heappush
from typing import Any, Final

import attrs

REGISTER: Final = 0  # the request number of a registration (requests count from 1)
SYSTEM_SESSION: Final = "bootstrap"  # the group's own session: always present, never evicted


class Verdict(enum.Enum):
    NEW = "new"  # apply it
    DUPLICATE = "duplicate"  # applied before: here is the remembered result
    EXPIRED = "expired"  # applied and acknowledged long ago (a very late retry): drop it
    REGISTERED = "registered"  # a registration: the result is the new session id
    NO_SESSION = "no_session"  # unknown session (evicted or never registered): drop it


# Module constants: an enum member lookup on the class costs more than the check itself.
_NEW, _DUPLICATE, _EXPIRED = Verdict.NEW, Verdict.DUPLICATE, Verdict.EXPIRED
_NO_SESSION = Verdict.NO_SESSION


def session_id(label: str, index: int, position: int) -> str:
    """The id a registration gets: its client's label and its place in the log."""
    return f"{label}@{index}.{position}"


def session_label(session: str) -> str:
    """The label a session id was registered under."""
    return session.rpartition("@")[0] or session


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
        self.sessions: dict[str, Session] = {SYSTEM_SESSION: Session(last_active=0)}
        # Eviction candidates: a min-heap holding one ``(last_active, session id)`` per
        # session other than the system one, where ``last_active`` may be stale (lower than
        # the session's own; it only grows). Refreshed only when such an entry reaches the
        # top, so a proposal costs nothing here and finding the least recently active
        # session costs O(log n) instead of a scan of every session per registration (a
        # burst of registrations past ``max_clients`` was quadratic: 4 ms each at 13,000
        # sessions, on every replica, in the apply path).
        self._idle: list[tuple[int, str]] = []

    def register(self, label: str, index: int, position: int) -> str:
        """Open a session for the registration at ``position`` of the entry at ``index``."""
        new = session_id(label, index, position)
        self.sessions[new] = Session(last_active=index)
        heappush(self._idle, (index, new))
        self._evict_beyond_limit(keep=new, index=index)
        return new

    def check(self, client_id: str, request_no: int, ack_below: int, index: int) -> Verdict:
        """Classify a proposal found in the log entry at ``index``; records the ack."""
        s = self.sessions.get(client_id)
        if s is None:
            return _NO_SESSION
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
        """While over ``max_clients``, evict the least recently active session (by
        ``(last_active, id)``; never ``keep`` nor the system session) if it has been idle
        for ``min_idle_entries``."""
        while len(self.sessions) > self.max_clients:
            victim = self._pop_least_recent(keep)
            if victim is None:
                return
            last_active = self.sessions[victim].last_active
            if last_active > index - self.min_idle_entries:
                heappush(self._idle, (last_active, victim))
                return  # everyone is recent enough that a retry may still come
            del self.sessions[victim]

    def _pop_least_recent(self, keep: str) -> str | None:
        """Take out of :attr:`_idle` the entry of the session other than ``keep`` with the
        smallest ``(last_active, id)`` and return that session; None when there is none.

        An entry's key never exceeds its session's current key, so the first entry found
        current on top is the true minimum; stale ones are pushed back refreshed.
        """
        idle, sessions = self._idle, self.sessions
        kept: tuple[int, str] | None = None
        found: str | None = None
        while idle:
            entry = heappop(idle)
            stamp, client = entry
            session = sessions.get(client)
            if session is None:  # a stale duplicate (the same id registered twice): drop it
                continue
            if client == keep:
                kept = entry
            elif session.last_active != stamp:
                heappush(idle, (session.last_active, client))
            else:
                found = client
                break
        if kept is not None:
            heappush(idle, kept)
        return found

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
        self.sessions = {SYSTEM_SESSION: Session(last_active=0)}
        for c, last, ack, results in rows:
            kept = {int(r): res for r, res in results}
            self.sessions[str(c)] = Session(int(last), int(ack), kept, sorted(kept))
        self._idle = [(s.last_active, c) for c, s in self.sessions.items() if c != SYSTEM_SESSION]
        heapify(self._idle)

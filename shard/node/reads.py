"""Linearizable queries through ReadIndex (Raft thesis §6.4), batched per driver turn.

Queries arriving in one turn share one ReadIndex round: the core confirms
leadership with a heartbeat round and names a log index; once this replica
has applied that index every query of the round is answered from the local
engine at the current seq. Queries never go through the log and change
nothing, so only the engine's query types are accepted here (a command sent
as a query would otherwise change one replica's state).
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from shard.engineapp import EngineApplication
from shard.node import protocol
from shard.node.clientserver import Reply
from shard.raft import NotLeader, Raft
from shard.statemachine import ReplicatedStateMachine

QUERY_TYPES = frozenset({"orders", "fills", "book"})

Pending = list[tuple[Any, Reply]]  # (decoded query, reply)


class ReadQueue:
    """Queries waiting for a ReadIndex round, for confirmation, or for apply."""

    def __init__(
        self, name: str, app: EngineApplication, rsm: ReplicatedStateMachine, timeout_ticks: int
    ) -> None:
        self.name = name
        self.app = app
        self.rsm = rsm
        self.timeout_ticks = timeout_ticks
        self.queued: Pending = []
        self._contexts = itertools.count(1)
        self._inflight: dict[bytes, tuple[int, Pending]] = {}  # context -> (age, queries)
        self._confirmed: list[tuple[int, Pending]] = []  # (read index, queries)

    def add(self, cmd: bytes, reply: Reply) -> None:
        try:
            query = orjson.loads(cmd)
        except orjson.JSONDecodeError:
            reply(protocol.error(protocol.BAD_REQUEST, "a query must be a JSON object"))
            return
        if not isinstance(query, dict) or query.get("type") not in QUERY_TYPES:
            types = ", ".join(sorted(QUERY_TYPES))
            reply(protocol.error(protocol.BAD_REQUEST, f"a query's type must be one of {types}"))
            return
        self.queued.append((query, reply))

    def start(self, raft: Raft, no_leader: protocol.Message) -> None:
        """Start one ReadIndex round for everything queued."""
        queries, self.queued = self.queued, []
        context = f"{self.name}/{next(self._contexts)}".encode()
        try:
            raft.read_index(context)
        except NotLeader:
            fail(queries, no_leader)
            return
        self._inflight[context] = (0, queries)

    def confirmed(self, context: bytes, index: int) -> None:
        entry = self._inflight.pop(context, None)
        if entry is not None:
            self._confirmed.append((index, entry[1]))

    def serve(self) -> None:
        """Answer every confirmed round whose index this replica has applied."""
        if not self._confirmed:
            return
        applied = self.rsm.applied_index
        still: list[tuple[int, Pending]] = []
        for index, queries in self._confirmed:
            if index > applied:
                still.append((index, queries))
                continue
            seq = self.rsm.seq
            answer = self.app.query
            for query, reply in queries:
                reply(protocol.result(seq, answer(query, seq)))
        self._confirmed = still

    def expire(self, ticks: int) -> None:
        """Age unanswered rounds; a round lost to a leader change times out."""
        for context, (age, queries) in list(self._inflight.items()):
            if age + ticks >= self.timeout_ticks:
                del self._inflight[context]
                fail(queries, protocol.error(protocol.TIMEOUT, "read index not confirmed in time"))
            else:
                self._inflight[context] = (age + ticks, queries)

    def ticks_to_deadline(self) -> int | None:
        """Ticks until the oldest unanswered round times out; None without one."""
        if not self._inflight:
            return None
        oldest = max(age for age, _ in self._inflight.values())
        return max(1, self.timeout_ticks - oldest)

    def fail_all(self, error: protocol.Message) -> None:
        fail(self.queued, error)
        self.queued = []
        for _, queries in self._inflight.values():
            fail(queries, error)
        self._inflight.clear()
        for _, queries in self._confirmed:
            fail(queries, error)
        self._confirmed = []


def fail(queries: Pending, error: protocol.Message) -> None:
    for _, reply in queries:
        reply(dict(error))

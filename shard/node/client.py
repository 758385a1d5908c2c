"""``ShardClient``: the one piece of code that speaks the shard client protocol from outside.

See :mod:`shard.node.api` for the contract. One client serves one replica
group (market). It keeps at most one multiplexed TCP connection per replica
(:mod:`shard.node.connection`) and runs no background tasks, so it needs no
nursery. It registers a client session with the group before its first
submit (:mod:`shard.sessions`) and again if the group forgets it.

Close it with ``await client.aclose()`` or ``async with ShardClient(...)``.
"""

from __future__ import annotations

import heapq
import itertools
import os
import ssl
import time
from collections.abc import Callable
from typing import Any, Self

import orjson
import trio

from config.schema import MarketConfig
from shard.node import protocol
from shard.node.api import (
    CommandResult,
    CommandTimeout,
    NodeStatus,
    ShardError,
    Unavailable,
)
from shard.node.authentication import NONCE_BYTES, Authenticator, client_opening
from shard.node.connection import ConnectFailed, ConnectionLost, ReplicaConnection
from shard.node.framing import encode_frame
from shard.node.subscription import Subscription

_STATUS_TIMEOUT_S = 1.0
_BACKOFF_MIN_S = 0.005
_BACKOFF_MAX_S = 0.1
_ACK_STEP = 64
# Unanswered requests per client id stay within this many request numbers: the
# replicas remember 1,000 results per client (shard.sessions), minus the ack step.
_WINDOW = 900
_MAX_BATCH = _WINDOW // 4  # commands per submit_many: well inside the window


def encode_command(command: Any) -> bytes:
    """The wire form of an engine command: JSON bytes (bytes pass through)."""
    return command if isinstance(command, bytes) else orjson.dumps(command)


# A reply or None (none came); the first-attempt codes retried when no later command was applied.
_Answer = protocol.Message | None
_RETRIED_CODES = frozenset({protocol.NOT_LEADER, protocol.UNAVAILABLE, protocol.TIMEOUT})


def _error_of(reply: protocol.Message) -> ShardError:
    """The :mod:`shard.node.api` exception an error reply stands for."""
    try:
        protocol.raise_for_error(reply)
    except ShardError as exc:
        return exc
    raise AssertionError(f"not an error reply: {reply!r}")


def _refused_before(answer: _Answer) -> ShardError:
    """The outcome of a command refused while a later one from the same write was applied."""
    if answer is None:  # replies come in order, so impossible; never guess "not applied"
        return CommandTimeout("no answer, yet a later command was applied", indeterminate=True)
    if answer.get("code") in (protocol.NOT_LEADER, protocol.UNAVAILABLE):
        return Unavailable(f"refused (not applied): {answer.get('message')}")
    return _error_of(answer)


def client_opener(secret: bytes | None) -> Callable[[str], bytes | None]:
    """For a client holding ``secret`` (or none): replica name -> the frame that opens a
    connection to it, proving the secret (None: nothing to prove)."""
    if secret is None:
        return lambda replica: None
    auth = Authenticator(secret)

    def opening(replica: str) -> bytes | None:
        now_ms = time.time_ns() // 1_000_000
        return encode_frame(client_opening(auth, replica, now_ms, os.urandom(NONCE_BYTES)))

    return opening


class ShardClient:
    """Client of one replica group; see :mod:`shard.node.api` for the contract.

    ``retry_for`` bounds how long one call keeps retrying through leader
    changes and unreachable replicas before it gives up with
    :class:`Unavailable` or :class:`CommandTimeout`. With ``gather_writes`` a
    request yields once before writing, so concurrent callers woken together
    (a gateway's lanes) share one write.
    """

    def __init__(
        self,
        market: MarketConfig,
        client_id: str | None = None,
        *,
        retry_for: float = 5.0,
        gather_writes: bool = False,
        secret: bytes | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.market = market
        # proves the cluster secret on each new connection (shard/node/authentication.py)
        self.opening = client_opener(secret)
        self.tls = tls  # mutual TLS to the replicas (shard/node/tls.py); None: plain TCP
        self.gather_writes = gather_writes
        # The label this client registers under; the group assigns the session id.
        self.client_id = client_id or f"client-{os.urandom(4).hex()}"
        self.session: str | None = None
        self._register_lock = trio.Lock()
        self.retry_for = retry_for
        self.addresses = {r.name: r.client for r in market.replicas}
        self.leader: str | None = None
        self._connections: dict[str, ReplicaConnection] = {}
        self._next_req = 1
        self._inflight: list[int] = []  # heap of request numbers not yet answered
        self._answered: set[int] = set()
        self._window_open = trio.Event()
        self._rotation = itertools.cycle(list(self.addresses))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        # Shielded (each close is immediate): under cancellation the first close's
        # checkpoint would otherwise end the loop and leak the other sockets.
        with trio.CancelScope(shield=True):
            for connection in connections:
                await connection.aclose()

    def connection(self, name: str) -> ReplicaConnection:
        connection = self._connections.get(name)
        if connection is None or not connection.usable:
            connection = ReplicaConnection(
                name,
                self.addresses[name],
                gather_writes=self.gather_writes,
                opening=self.opening,
                tls=self.tls,
            )
            self._connections[name] = connection
        return connection

    # -- idempotency keys --------------------------------------------------

    async def _allocate(self) -> int:
        # Keep every unanswered request within the window the replicas remember
        # results for, or a slow retry could find its result forgotten.
        while self._inflight and self._next_req - self._inflight[0] >= _WINDOW:
            if self._window_open.is_set():
                self._window_open = trio.Event()
            await self._window_open.wait()
        req = self._next_req
        self._next_req += 1
        heapq.heappush(self._inflight, req)
        return req

    def _finish(self, req: int) -> None:
        self._answered.add(req)
        while self._inflight and self._inflight[0] in self._answered:
            self._answered.discard(heapq.heappop(self._inflight))
        self._window_open.set()

    async def _session_id(self) -> str:
        """This client's session id, registering first if it has none (thesis §6.3)."""
        if self.session is not None:
            return self.session
        async with self._register_lock:
            if self.session is None:
                reply = await self._to_leader({"t": "register", "client": self.client_id})
                session: str = reply["client"]
                self.session = session
            return self.session

    def _session_lost(self, answer: _Answer, session: Any) -> None:
        """Forget ``session`` if ``answer`` says the group no longer knows it."""
        expired = answer is not None and answer.get("code") == protocol.SESSION_EXPIRED
        if expired and self.session == session:
            self.session = None

    async def _submits(self, reqs: list[int], commands: list[Any]) -> list[protocol.Message]:
        """The submit requests of ``commands`` under this client's session (registering
        first if it has none), request numbers ``reqs``."""
        client = await self._session_id()
        ack = self._ack_below()
        return [
            {"t": "submit", "client": client, "req": req, "ack": ack, "cmd": encode_command(c)}
            for req, c in zip(reqs, commands, strict=True)
        ]

    def _ack_below(self) -> int:
        """Every request number below this has its answer; the group may forget them.

        Rounded down to a multiple of 64: each rise makes the replicas sweep
        this client's remembered results, so it should not rise on every request.
        """
        low = self._inflight[0] if self._inflight else self._next_req
        return low - low % _ACK_STEP

    # -- requests ----------------------------------------------------------

    async def submit(self, command: Any) -> CommandResult:
        """Commit and apply ``command`` exactly once; its seq and events."""
        req = await self._allocate()
        try:
            [message] = await self._submits([req], [command])
            reply = await self._to_leader(message)
        finally:
            self._finish(req)
        return CommandResult(reply["seq"], reply["events"])

    async def submit_many(self, commands: list[Any]) -> list[CommandResult]:
        """Commit and apply each of ``commands`` exactly once; their results, in order.

        The commands travel in one write and one task waits for all their
        replies, which is far cheaper per command than a task per ``submit``
        (for load generators and batching callers). They are independent
        commands: the group may interleave others between them, and they are
        applied in this order only when no retry is needed. If the first
        attempt does not answer them all (leader change, lost connection), each
        unanswered one is retried as :meth:`submit` does, with the same
        idempotency key; an error raised then leaves the commands after it
        possibly applied, possibly not.
        """
        if len(commands) > _MAX_BATCH:
            raise ValueError(f"at most {_MAX_BATCH} commands per submit_many")
        reqs = [await self._allocate() for _ in commands]
        try:
            messages = await self._submits(reqs, commands)
            replies = await self._batch_to_leader(messages)
        finally:
            for req in reqs:
                self._finish(req)
        return [CommandResult(reply["seq"], reply["events"]) for reply in replies]

    async def _batch_to_leader(self, messages: list[protocol.Message]) -> list[protocol.Message]:
        """One attempt at the presumed leader for the whole batch, then per-request retries."""
        target = self.leader if self.leader is not None else next(self._rotation)
        answered: list[protocol.Message | None] = [None] * len(messages)
        try:
            answers = await self.connection(target).request_many([dict(m) for m in messages])
        except (ConnectFailed, ConnectionLost):
            self._forget_leader(target)
        else:
            for i, answer in enumerate(answers):
                self._session_lost(answer, messages[i]["client"])
                if answer.get("t") != "error":
                    answered[i] = answer
                    self.leader = target
        replies: list[protocol.Message] = []
        for message, got in zip(messages, answered, strict=True):
            replies.append(got if got is not None else await self._to_leader(message))
        return replies

    async def submit_ordered(
        self,
        commands: list[Any],
        report: Callable[[int, CommandResult | ShardError], None],
    ) -> None:
        """Apply ``commands`` exactly once each, in this order; ``report(i, outcome)`` each
        as soon as it is known, in order (for the gateway's lanes).

        One ``batch`` frame, which the leader queues or refuses as a whole. Should a
        command still be refused while a later one was applied, retrying it would
        apply it after its successor, so it is reported :class:`Unavailable`.
        Unanswered commands (leader change, lost connection) are retried one by
        one, in order, with their idempotency keys, as :meth:`submit` does.
        """
        if len(commands) > _MAX_BATCH:
            raise ValueError(f"at most {_MAX_BATCH} commands per submit_ordered")
        reqs = [await self._allocate() for _ in commands]
        try:
            messages = await self._submits(reqs, commands)
            answers = await self._first_attempt(messages)
            ok = [a is not None and a.get("t") != "error" for a in answers]
            last_ok = max((i for i, good in enumerate(ok) if good), default=-1)
            for i, (message, answer) in enumerate(zip(messages, answers, strict=True)):
                if answer is not None and ok[i]:
                    report(i, CommandResult(answer["seq"], answer["events"]))
                elif i < last_ok:
                    report(i, _refused_before(answer))
                elif answer is not None and answer.get("code") not in _RETRIED_CODES:
                    report(i, _error_of(answer))
                else:
                    try:
                        reply = await self._to_leader(message)
                    except ShardError as exc:
                        report(i, exc)
                    else:
                        report(i, CommandResult(reply["seq"], reply["events"]))
        finally:
            for req in reqs:
                self._finish(req)

    async def _first_attempt(self, messages: list[protocol.Message]) -> list[_Answer]:
        """The presumed leader's answers to ``messages`` sent in one write (``None``: none came)."""
        target = self.leader if self.leader is not None else next(self._rotation)
        connection = self.connection(target)
        try:
            answers = await connection.request_many_partial([dict(m) for m in messages], True)
        except ConnectFailed:
            self._forget_leader(target)
            return [None] * len(messages)
        for answer, message in zip(answers, messages, strict=True):
            self._session_lost(answer, message["client"])
        if any(a is None for a in answers):
            self._forget_leader(target)
        elif any(a.get("t") != "error" for a in answers if a is not None):
            self.leader = target
        return answers

    async def query(self, command: Any) -> CommandResult:
        """A linearizable query (ReadIndex) answered by the leader."""
        reply = await self._to_leader({"t": "query", "cmd": encode_command(command)})
        return CommandResult(reply["seq"], reply["events"])

    async def admin(self, action: str, **fields: Any) -> protocol.Message:
        """Run an admin action on the leader; the ``ok`` reply's fields."""
        return await self._to_leader({"t": "admin", "action": action, **fields})

    async def admin_on(self, node: str, action: str, **fields: Any) -> protocol.Message:
        """Run an admin action on one given replica (no redirects)."""
        reply = await self.connection(node).request({"t": "admin", "action": action, **fields})
        protocol.raise_for_error(reply)
        return reply

    async def _to_leader(self, message: protocol.Message) -> protocol.Message:
        deadline = trio.current_time() + self.retry_for
        maybe_applied = False
        backoff = _BACKOFF_MIN_S
        last_problem = "no replica answered"
        while True:
            redirected = False
            target = self.leader if self.leader is not None else next(self._rotation)
            try:
                reply = await self.connection(target).request(dict(message))
            except ConnectFailed as exc:
                last_problem = str(exc)
                self._forget_leader(target)
            except ConnectionLost as exc:
                last_problem = f"{target}: {exc}"
                maybe_applied = maybe_applied or message["t"] == "submit"
                self._forget_leader(target)
            else:
                if reply.get("t") != "error":
                    self.leader = target
                    return reply
                code = reply.get("code")
                last_problem = f"{target}: {code}: {reply.get('message')}"
                if code == protocol.NOT_LEADER:
                    hint = reply.get("leader")
                    self.leader = hint if hint in self.addresses and hint != target else None
                    redirected = self.leader is not None  # follow it at once
                elif code == protocol.SESSION_EXPIRED:
                    self._session_lost(reply, message.get("client"))
                    if maybe_applied:  # an earlier attempt may have been applied
                        raise CommandTimeout(last_problem, indeterminate=True)
                    raise Unavailable(f"{last_problem} (not applied)", self.leader)
                elif code == protocol.TIMEOUT and reply.get("indeterminate"):
                    raise CommandTimeout(last_problem, indeterminate=True)  # retrying is futile
                elif code == protocol.TIMEOUT:
                    maybe_applied = maybe_applied or message["t"] == "submit"
                elif code == protocol.UNAVAILABLE:
                    self._forget_leader(target)
                else:
                    protocol.raise_for_error(reply)
            if trio.current_time() >= deadline:
                if maybe_applied:
                    raise CommandTimeout(last_problem, indeterminate=True)
                raise Unavailable(last_problem, self.leader)
            if redirected:
                continue
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    def _forget_leader(self, target: str) -> None:
        if self.leader == target:
            self.leader = None

    def subscribe(self, from_seq: int) -> Subscription:
        """Applied items from ``from_seq`` on, in seq order, from any replica (followers first).

        Use as ``async with client.subscribe(n) as items: async for item in items``
        or iterate directly and ``aclose()`` it.
        """
        order = [n for n in self.addresses if n != self.leader]
        if self.leader is not None:
            order.append(self.leader)
        return Subscription(
            [(n, self.addresses[n]) for n in order],
            from_seq,
            retry_for=self.retry_for,
            opening=self.opening,
            tls=self.tls,
        )

    async def status(self) -> list[NodeStatus]:
        """Every replica's status, in config order; unreachable ones marked so."""
        found: dict[str, NodeStatus] = {}

        async def one(name: str) -> None:
            connection = self.connection(name)
            with trio.move_on_after(_STATUS_TIMEOUT_S):
                try:
                    reply = await connection.request({"t": "status"})
                    protocol.raise_for_error(reply)
                    found[name] = protocol.node_status(name, reply)
                except (ConnectFailed, ConnectionLost, ShardError):
                    pass
            if name not in found:
                await connection.aclose()

        async with trio.open_nursery() as nursery:
            for name in self.addresses:
                nursery.start_soon(one, name)
        return [found.get(name, NodeStatus(name=name, reachable=False)) for name in self.addresses]

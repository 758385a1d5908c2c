"""Replies the leader owes its clients until their proposals are applied.

Keyed by ``(session id, request number)``: a retry of a request still in
flight waits beside the first attempt and both get the one outcome. The
table is the leader's only: a follower has nobody waiting, and a leader that
steps down fails every waiter (the clients retry at the new leader with the
same idempotency keys).
"""

from __future__ import annotations

from shard.node import protocol
from shard.node.clientserver import Reply
from shard.sessions import Verdict

Key = tuple[str, int]


class Waiters:
    """``(session, request) -> replies``; ``replies`` is the plain dict for the apply loop."""

    __slots__ = ("replies",)

    def __init__(self) -> None:
        self.replies: dict[Key, list[Reply]] = {}

    def add(self, key: Key, reply: Reply) -> None:
        self.replies.setdefault(key, []).append(reply)

    def fail(self, key: Key, error: protocol.Message) -> None:
        """Answer the waiters of ``key`` with ``error`` (each gets its own copy)."""
        for reply in self.replies.pop(key, ()):
            reply(dict(error))

    def fail_all(self, error: protocol.Message) -> None:
        for key in list(self.replies):
            self.fail(key, error)

    def session_outcome(
        self, client_id: str, request_no: int, verdict: Verdict, result: str | None
    ) -> None:
        """Answer a registration, or a proposal the session table refused."""
        key = (client_id, request_no)
        if verdict is Verdict.REGISTERED:
            assert result is not None
            for reply in self.replies.pop(key, ()):
                reply({"t": "registered", "client": result})
        elif verdict is Verdict.NO_SESSION:
            self.fail(key, protocol.no_session(client_id))
        else:
            # EXPIRED: below the session's acknowledged mark (a very late retry, or
            # the client's window outgrew the session table): applied before and
            # forgotten, or dropped now. The client cannot know which.
            self.fail(key, protocol.forgotten())

"""The shard client protocol's messages (docs/architecture.md §4), as plain msgpack maps.

Requests and replies are dicts with a ``t`` tag; this module is the one place
that knows their field names, validates requests from the wire and turns
error replies into the exceptions of :mod:`shard.node.api`. Plain dicts rather
than attrs classes because every submit and every reply crosses here: at
100k commands per second, one less object per message matters.
"""

from __future__ import annotations

from typing import Any, Final

from shard.node.api import (
    AppliedItem,
    BadRequest,
    CommandTimeout,
    NodeStatus,
    ShardError,
    SubscriptionGone,
    Unavailable,
)

Message = dict[str, Any]

NOT_LEADER: Final = "not_leader"
UNAVAILABLE: Final = "unavailable"
TIMEOUT: Final = "timeout"
BAD_REQUEST: Final = "bad_request"
INTERNAL: Final = "internal"
GONE: Final = "gone"
SESSION_EXPIRED: Final = "session_expired"
UNAUTHORIZED: Final = "unauthorized"  # the connection did not prove the cluster secret
MAX_CLIENT_LABEL_CHARS: Final = 64

ADMIN_ACTIONS: Final = frozenset(
    {"transfer_leader", "add_replica", "promote_replica", "remove_replica", "snapshot"}
)


class RequestError(Exception):
    """A request the server refuses; becomes an error reply with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def error(
    code: str, message: str, *, leader: str | None = None, leader_addr: str | None = None
) -> Message:
    return {
        "t": "error",
        "code": code,
        "message": message,
        "leader": leader,
        "leader_addr": leader_addr,
    }


def no_leader() -> Message:
    return error(UNAVAILABLE, "no leader (election in progress?)")


def not_leader(me: str, leader: str | None, client_addresses: dict[str, str]) -> Message:
    """The refusal of a replica that does not lead: where to go, if it knows."""
    if leader is None or leader == me:
        return no_leader()
    return error(
        NOT_LEADER,
        f"{me} is not the leader",
        leader=leader,
        leader_addr=client_addresses.get(leader),
    )


def forgotten() -> Message:
    """A request below the session's acknowledged mark: applied once and forgotten, or
    dropped now; its client cannot know which."""
    message = error(TIMEOUT, "request no longer remembered; outcome unknown")
    message["indeterminate"] = True
    return message


def no_session(client: str) -> Message:
    """A submit for a session the group does not know (evicted or never registered).

    This attempt was not applied; an earlier attempt of the same request may
    have been. The client registers again (a new session) before going on.
    """
    return error(SESSION_EXPIRED, f"no session {client!r}: register again")


def result(seq: int, events: list[Any]) -> Message:
    return {"t": "result", "seq": seq, "events": events}


def _field(message: Message, key: str, kind: type | tuple[type, ...]) -> Any:
    value = message.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RequestError(BAD_REQUEST, f"{key!r} must be {name}, got {type(value).__name__}")
    return value


def check_request(message: Any) -> tuple[str, Any]:
    """Validate a decoded request; returns ``(t, rid)`` or raises :class:`RequestError`."""
    if not isinstance(message, dict):
        raise RequestError(BAD_REQUEST, "a request must be a map")
    kind = message.get("t")
    rid = message.get("rid")
    if kind == "submit":
        _field(message, "client", str)
        if _field(message, "req", int) < 1:
            raise RequestError(BAD_REQUEST, "'req' counts from 1")
        _field(message, "ack", int)
        _field(message, "cmd", bytes)
    elif kind == "register":
        label = _field(message, "client", str)
        if not 0 < len(label) <= MAX_CLIENT_LABEL_CHARS:
            raise RequestError(BAD_REQUEST, "'client' must be 1 to 64 characters")
    elif kind == "query":
        _field(message, "cmd", bytes)
    elif kind == "subscribe":
        _field(message, "from_seq", int)
    elif kind == "admin":
        action = message.get("action")
        if action not in ADMIN_ACTIONS:
            raise RequestError(BAD_REQUEST, f"unknown admin action {action!r}")
    elif kind != "status":
        raise RequestError(BAD_REQUEST, f"unknown request type {kind!r}")
    return kind, rid


def raise_for_error(reply: Message) -> None:
    """Raise the :mod:`shard.node.api` exception an error reply stands for."""
    if reply.get("t") != "error":
        return
    code = reply.get("code")
    message = str(reply.get("message", ""))
    if code in (UNAVAILABLE, NOT_LEADER):
        raise Unavailable(message, reply.get("leader"))
    if code == SESSION_EXPIRED:  # this attempt was not applied
        raise Unavailable(message)
    if code == TIMEOUT:
        raise CommandTimeout(message, indeterminate=bool(reply.get("indeterminate", True)))
    if code == BAD_REQUEST:
        raise BadRequest(message)
    if code == GONE:
        raise SubscriptionGone(message)
    raise ShardError(f"{code}: {message}")


def applied_items(message: Message) -> list[AppliedItem]:
    """The items of a pushed ``applied`` message."""
    return [
        AppliedItem(seq, events, [tuple(change) for change in changes])
        for seq, events, changes in message["items"]
    ]


_STATUS_FIELDS = (
    "role",
    "term",
    "leader",
    "commit_index",
    "applied_index",
    "applied_seq",
    "digest",
    "digest_seq",
    "lag",
    "diverged",
)


def node_status(name: str, reply: Message) -> NodeStatus:
    """A :class:`NodeStatus` from a ``status`` reply (unknown extra fields ignored)."""
    return NodeStatus(
        name=name, reachable=True, **{k: reply[k] for k in _STATUS_FIELDS if k in reply}
    )

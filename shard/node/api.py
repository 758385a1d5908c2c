"""What a client of a replica group gets back: results, stream items, errors.

``shard.node.client.ShardClient`` (one per replica group) returns these; the
gateway, ``clob admin`` and the tests use nothing else of the node runtime.

    client = ShardClient(market_config, client_id="gw-1-3f2a")
    result = await client.submit({"type": "new_order", ...})   # CommandResult
    result = await client.query({"type": "orders", "user": "alice", ...})
    async for item in client.subscribe(from_seq=result.seq + 1): ...  # AppliedItem
    statuses = await client.status()                             # list[NodeStatus]

``submit`` follows leader redirects and retries with the same idempotency key
(client id + request number), so a command is applied at most once; it raises
:class:`Unavailable` or :class:`CommandTimeout` when it cannot get a definite
answer (callers bound it with ``trio.fail_after``/``move_on_after``).
"""

from __future__ import annotations

from typing import Any

import attrs

Event = dict[str, Any]  # a JSON-ready engine event, exactly as in ENGINE.md
LevelChange = tuple[str, str, str, str]  # (market, "buy"|"sell", price, new total qty)


@attrs.frozen
class CommandResult:
    """A command's or query's outcome: its ``seq`` and the events it produced."""

    seq: int
    events: list[Event]


@attrs.frozen
class AppliedItem:
    """One applied command as streamed from any replica, in ``seq`` order."""

    seq: int
    events: list[Event]
    level_changes: list[LevelChange]


@attrs.frozen
class NodeStatus:
    name: str
    reachable: bool
    role: str = "unknown"  # "leader" | "follower" | "candidate" | "learner"
    term: int = 0
    leader: str | None = None
    commit_index: int = 0
    applied_index: int = 0
    applied_seq: int = 0
    digest: str | None = None  # hex state digest at digest_seq
    digest_seq: int = 0
    lag: dict[str, int] = attrs.field(factory=dict)  # leader only: follower -> entries behind
    diverged: bool = False


class ShardError(Exception):
    """Base class of the errors a replica group reports to its clients."""


class Unavailable(ShardError):
    """The group has no leader or no quorum now; retryable."""

    def __init__(self, message: str, leader_hint: str | None = None) -> None:
        super().__init__(message)
        self.leader_hint = leader_hint


class CommandTimeout(ShardError):
    """No definite answer in time; ``indeterminate`` when it may have been applied."""

    def __init__(self, message: str, *, indeterminate: bool) -> None:
        super().__init__(message)
        self.indeterminate = indeterminate


class SubscriptionGone(ShardError):
    """The replica no longer keeps events from the requested seq; resync from a query."""


class BadRequest(ShardError):
    """The replica refused the request as malformed (a bug in the caller)."""

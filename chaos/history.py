"""What happened during a chaos run: every client request, stream message and fault.

Each request is recorded twice, in the style of Jepsen histories: when it is
invoked and when its outcome is known, both with ``time.monotonic_ns()``. The
outcome is ``ok`` (a reply with ``seq`` and events), ``fail`` (a definite
refusal: the command was not applied) or ``indeterminate`` (no definite
answer: it may or may not have been applied). Requests still open when the
run ends become indeterminate. Stream messages are kept per subscription
session (subscribe until the connection ends), and faults with their start
and end. The checker (:mod:`chaos.checker`) reads nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import attrs
import orjson

Outcome = Literal["ok", "fail", "indeterminate"]
Event = dict[str, Any]

COMMAND_OPS = frozenset({"new_order", "cancel", "amend", "cancel_all"})
QUERY_OPS = frozenset({"orders", "fills", "book"})


@attrs.frozen
class Operation:
    """One completed request as the client saw it."""

    op_id: int
    process: str  # the workload client that sent it
    user: str
    op: str  # new_order | cancel | amend | cancel_all | orders | ...
    market: str
    request: dict[str, Any]  # the request's fields, less "op" and "id"
    invoke_ns: int
    complete_ns: int
    outcome: Outcome
    seq: int | None = None
    events: tuple[Event, ...] = ()
    error: str | None = None  # the error code for fail / indeterminate

    @property
    def client_order_id(self) -> str | None:
        value = self.request.get("client_order_id")
        return value if isinstance(value, str) else None

    @property
    def is_command(self) -> bool:
        return self.op in COMMAND_OPS

    def engine_command(self) -> dict[str, Any]:
        """The engine command this request becomes (the gateway adds type and user)."""
        return {"type": self.op, "user": self.user, **self.request}


@attrs.frozen
class Pending:
    """A request sent and not yet answered."""

    op_id: int
    process: str
    user: str
    op: str
    market: str
    request: dict[str, Any]
    invoke_ns: int


@attrs.define
class Subscription:
    """One subscription session of one client: the messages in arrival order."""

    sub_id: int
    process: str
    user: str
    channel: str  # "user" | "trades"
    market: str | None  # None for the user channel (it spans markets)
    messages: list[dict[str, Any]] = attrs.field(factory=list)

    def record(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


@attrs.frozen
class FaultRecord:
    """A fault injected during the run, with when it started and ended (0: never healed)."""

    kind: str  # kill | pause | partition | asymmetric | isolate_leader | torn_wal | ...
    target: str  # replica or gateway names, or a description of the cut
    market: str | None
    start_ns: int
    end_ns: int
    detail: str = ""
    failover_ns: int | None = None  # kill/pause/isolate of a leader: until a new leader was seen
    error: str | None = None  # the system failed to come back (e.g. a replica did not restart)
    joined_ns: int | None = None  # replace_follower: add request -> the spare a committed voter
    removed_ns: int | None = None  # replace_follower: remove request -> removal committed


class History:
    """The recorder the workload and the fault schedule write to (single trio thread)."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []
        self.subscriptions: list[Subscription] = []
        self.faults: list[FaultRecord] = []
        self._pending: dict[int, Pending] = {}
        self._next_op = 0
        self._next_sub = 0

    def invoke(
        self, process: str, user: str, op: str, market: str, request: dict[str, Any]
    ) -> Pending:
        self._next_op += 1
        pending = Pending(self._next_op, process, user, op, market, request, time.monotonic_ns())
        self._pending[pending.op_id] = pending
        return pending

    def _complete(self, pending: Pending, outcome: Outcome, **fields: Any) -> Operation:
        del self._pending[pending.op_id]
        operation = Operation(
            op_id=pending.op_id,
            process=pending.process,
            user=pending.user,
            op=pending.op,
            market=pending.market,
            request=pending.request,
            invoke_ns=pending.invoke_ns,
            complete_ns=time.monotonic_ns(),
            outcome=outcome,
            **fields,
        )
        self.operations.append(operation)
        return operation

    def ok(self, pending: Pending, seq: int, events: list[Event]) -> Operation:
        return self._complete(pending, "ok", seq=seq, events=tuple(events))

    def fail(self, pending: Pending, code: str) -> Operation:
        return self._complete(pending, "fail", error=code)

    def indeterminate(self, pending: Pending, reason: str) -> Operation:
        return self._complete(pending, "indeterminate", error=reason)

    def subscribe(self, process: str, user: str, channel: str, market: str | None) -> Subscription:
        self._next_sub += 1
        subscription = Subscription(self._next_sub, process, user, channel, market)
        self.subscriptions.append(subscription)
        return subscription

    def fault(self, record: FaultRecord) -> None:
        self.faults.append(record)

    def close(self) -> None:
        """End of run: whatever is still open may or may not have been applied."""
        for pending in list(self._pending.values()):
            self.indeterminate(pending, "run_ended")

    def dump(self, path: Path) -> None:
        """Write the whole history as JSON lines (for a human chasing a violation)."""
        with path.open("wb") as out:
            for operation in sorted(self.operations, key=lambda o: o.invoke_ns):
                out.write(orjson.dumps({"record": "op", **attrs.asdict(operation)}) + b"\n")
            for subscription in self.subscriptions:
                out.write(orjson.dumps({"record": "sub", **attrs.asdict(subscription)}) + b"\n")
            for fault in self.faults:
                out.write(orjson.dumps({"record": "fault", **attrs.asdict(fault)}) + b"\n")

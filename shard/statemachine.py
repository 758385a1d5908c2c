"""The replicated state machine: committed entries in, per-proposal outcomes out.

:class:`ReplicatedStateMachine` sits between the consensus core and an
:class:`Application` (the matching engine in production, a tiny register in
the simulator). It decodes proposal batches, runs them through the session
table (registration and exactly-once, thesis §6.3) and numbers the commands
it really applies: ``seq`` counts applied commands from 1; NOOP and CONFIG
entries, registrations, refusals and deduplicated retries do not consume a
number.

A batch's stamp row (:data:`shard.proposals.STAMP`) sets the time the
application is told its commands happened: the latest stamp, or the time
before it if that is later, so that time never goes back within a group.

Its snapshot is deterministic bytes: applied index and term, seq, time, the
session table and the application's own snapshot. Two replicas that applied
the same log prefix produce byte-identical snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import attrs
import msgpack

from shard.proposals import STAMP, decode_rows
from shard.records import Entry, EntryKind
from shard.sessions import REGISTER, SessionTable, Verdict

_SNAPSHOT_VERSION = 3  # 2: client sessions are registered; 3: the time of the last stamp
_READABLE_VERSIONS = (2, 3)


class Application(Protocol):
    """A deterministic application: same commands in, same results and snapshot out."""

    def apply(self, seq: int, command: bytes) -> Any:
        """Apply one command; the result must be plain msgpack-able data."""
        ...

    def stamp(self, now: int) -> None:
        """The commands applied next were sequenced at ``now`` (µs since the epoch)."""
        ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


@attrs.frozen
class Outcome:
    """What happened to one proposal of a committed entry."""

    index: int  # log index of the entry that carried it
    client_id: str
    request_no: int
    verdict: Verdict
    result: Any  # the new session id when REGISTERED; None when EXPIRED or NO_SESSION
    seq: int  # the command's seq (the original one for a duplicate; else 0)


# An Outcome's fields as a tuple: (index, client_id, request_no, verdict, result, seq).
OutcomeRow = tuple[int, str, int, Verdict, Any, int]


class ReplicatedStateMachine:
    """Sessions + application, advanced by committed log entries."""

    def __init__(
        self,
        app: Application,
        *,
        max_clients: int = 10_000,
        max_results: int = 1_000,
        min_idle_entries: int = 10_000,
    ) -> None:
        self.app = app
        self.sessions = SessionTable(
            max_clients=max_clients, max_results=max_results, min_idle_entries=min_idle_entries
        )
        self.applied_index = 0
        self.applied_term = 0
        self.seq = 0
        self.time = 0  # the latest stamp (µs), never decreasing

    def apply(self, entries: Iterable[Entry]) -> list[Outcome]:
        return [Outcome(*row) for row in self.apply_rows(entries)]

    def apply_entry(self, entry: Entry) -> list[Outcome]:
        return [Outcome(*row) for row in self.apply_rows((entry,))]

    def apply_rows(self, entries: Iterable[Entry]) -> list[OutcomeRow]:
        """Like :meth:`apply`, with each outcome as a plain tuple in :class:`Outcome` order.

        The node runtime's hot path: no object per proposal or per outcome.
        """
        out: list[OutcomeRow] = []
        append = out.append
        sessions = self.sessions
        check, record, remembered = sessions.check, sessions.record, sessions.result
        app_apply = self.app.apply
        new, duplicate, registered = Verdict.NEW, Verdict.DUPLICATE, Verdict.REGISTERED
        for entry in entries:
            assert entry.index == self.applied_index + 1, (entry.index, self.applied_index)
            index = entry.index
            self.applied_index = index
            self.applied_term = entry.term
            if entry.kind is not EntryKind.NORMAL:
                continue
            for position, (client_id, request_no, ack_below, command) in enumerate(
                decode_rows(entry.data)
            ):
                if request_no <= REGISTER:
                    if request_no == REGISTER:
                        session = sessions.register(client_id, index, position)
                        append((index, client_id, request_no, registered, session, 0))
                    elif request_no == STAMP and ack_below > self.time:
                        self.time = ack_below
                        self.app.stamp(ack_below)
                    continue
                verdict = check(client_id, request_no, ack_below, index)
                if verdict is new:
                    seq = self.seq = self.seq + 1
                    value = app_apply(seq, command)
                    record(client_id, request_no, [seq, value])
                elif verdict is duplicate:
                    seq, value = remembered(client_id, request_no)
                else:
                    append((index, client_id, request_no, verdict, None, 0))
                    continue
                append((index, client_id, request_no, verdict, value, seq))
        return out

    def snapshot(self) -> bytes:
        state = [
            _SNAPSHOT_VERSION,
            self.applied_index,
            self.applied_term,
            self.seq,
            self.time,
            self.sessions.to_plain(),
            self.app.snapshot(),
        ]
        return msgpack.packb(state, use_bin_type=True)  # type: ignore[no-any-return]

    def restore(self, data: bytes) -> None:
        fields = msgpack.unpackb(data, raw=False)
        version = fields[0]
        if version not in _READABLE_VERSIONS:
            raise ValueError(
                f"state machine snapshot format {version}, this build reads {_READABLE_VERSIONS}"
                " (a data directory from an incompatible version)"
            )
        if version == 2:  # from before stamps: no time yet
            fields.insert(4, 0)
        _, index, term, seq, time, sessions, app = fields
        self.applied_index, self.applied_term, self.seq, self.time = index, term, seq, time
        self.sessions.load_plain(sessions)
        self.app.restore(app)
        self.app.stamp(time)


class RegisterApplication:
    """The simulator's tiny application: an append-only list of commands.

    The result of a command is its position in the list, so a command applied
    twice or out of order shows up immediately.
    """

    def __init__(self) -> None:
        self.items: list[bytes] = []

    def apply(self, seq: int, command: bytes) -> Any:
        self.items.append(command)
        return len(self.items)

    def stamp(self, now: int) -> None:
        pass  # the register has no use for time

    def snapshot(self) -> bytes:
        return msgpack.packb(self.items, use_bin_type=True)  # type: ignore[no-any-return]

    def restore(self, data: bytes) -> None:
        self.items = [bytes(x) for x in msgpack.unpackb(data, raw=False)]

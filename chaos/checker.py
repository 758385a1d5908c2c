"""Pure checks of a chaos run: the recorded history against the committed log.

Inputs are the client history (:mod:`chaos.history`), each market's
committed log fetched from the replicas after the run (events always, the
commands themselves when they could be read) and the replicas' final status.
Every check returns :class:`Violation` records; none does I/O.

The workload keeps three promises the checks rely on: it never reuses a
``client_order_id`` (so a second application of a ``new_order`` is visible
as a second ``accepted`` or as a ``duplicate_client_order_id`` rejection),
it addresses cancels and amends by ``order_id`` (so a rejected event that
carries a ``client_order_id`` comes from a ``new_order``), and it sends each
``new_order``/``cancel``/``amend`` command at most once (so two equal
committed commands are a duplicate).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import orjson

from chaos.committed import (
    CommittedEntry,
    CommittedLog,
    Violation,
    leaked_names,
    redact,
)
from chaos.fills_checks import check_fills_order
from chaos.history import Event, Operation, Subscription
from chaos.order_model import OrderModel, order_key
from chaos.stream_checks import check_streams
from shard.node.api import NodeStatus

__all__ = [
    "CheckReport",
    "CommittedEntry",
    "CommittedLog",
    "EngineLike",
    "Violation",
    "check_acknowledged",
    "check_all",
    "check_checkpoints",
    "check_no_duplicates",
    "check_queries",
    "check_realtime",
    "check_replay",
    "check_replica_logs",
    "check_replicas",
    "check_streams",
    "leaked_names",
    "redact",
]


class EngineLike(Protocol):
    def execute(self, command: object, seq: int) -> list[Any]: ...

    def encode(self, event: Any) -> dict[str, Any]: ...


def _canonical(command: Mapping[str, Any]) -> bytes:
    return orjson.dumps(command, option=orjson.OPT_SORT_KEYS)


def _client_order_key(event: Event) -> tuple[str, str] | None:
    cid = event.get("client_order_id")
    user = event.get("user")
    if isinstance(cid, str) and isinstance(user, str):
        return user, cid
    return None


def _new_order_applications(log: CommittedLog) -> dict[tuple[str, str], list[int]]:
    """(user, client_order_id) -> seqs of the new_order commands that carried it."""
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for seq in sorted(log.entries):
        entry = log.entries[seq]
        if entry.command is not None:
            if entry.command.get("type") != "new_order":
                continue
            cid, user = entry.command.get("client_order_id"), entry.command.get("user")
            if isinstance(cid, str) and isinstance(user, str):
                found[(user, cid)].append(seq)
            continue
        first = entry.events[0] if entry.events else {}
        if first.get("type") in ("accepted", "rejected"):
            key = _client_order_key(first)
            if key is not None:
                found[key].append(seq)
    return found


def check_acknowledged(
    ops: Sequence[Operation], logs: Mapping[str, CommittedLog]
) -> list[Violation]:
    """Every acknowledged command is in the committed log at its seq, with the events told."""
    out: list[Violation] = []
    told_at: dict[tuple[str, int], int] = {}
    for op in ops:
        if op.outcome != "ok" or not op.is_command or op.seq is None:
            continue
        log = logs.get(op.market)
        if log is None:
            out.append(Violation("lost_ack", op.market, "no committed log for market", (op.op_id,)))
            continue
        other = told_at.setdefault((op.market, op.seq), op.op_id)
        if other != op.op_id:
            out.append(
                Violation(
                    "seq_reused",
                    op.market,
                    f"two acknowledged commands were told seq {op.seq}",
                    (other, op.op_id),
                )
            )
        if op.seq > log.last_seq:
            out.append(
                Violation(
                    "lost_ack",
                    op.market,
                    f"acknowledged {op.op} at seq {op.seq} but the replicas committed only "
                    f"up to {log.last_seq}",
                    (op.op_id,),
                )
            )
            continue
        if op.seq < log.first_seq:
            continue  # compacted away before we could read it: checked by nothing
        if leaked_names(op.events, op.user):
            out.append(
                Violation(
                    "privacy",
                    op.market,
                    f"{op.user!r} was told {leaked_names(op.events, op.user)}",
                    (op.op_id,),
                )
            )
        entry = log.entries[op.seq]
        if redact(entry.events, op.user) != redact(op.events, op.user):
            out.append(
                Violation(
                    "wrong_result",
                    op.market,
                    f"{op.op} acknowledged at seq {op.seq} with events {list(op.events)!r} but the "
                    f"committed events are {list(entry.events)!r}",
                    (op.op_id,),
                )
            )
        elif entry.command is not None and entry.command != op.engine_command():
            out.append(
                Violation(
                    "wrong_result",
                    op.market,
                    f"seq {op.seq} holds {entry.command!r}, not the acknowledged "
                    f"{op.engine_command()!r}",
                    (op.op_id,),
                )
            )
    return out


def check_no_duplicates(
    ops: Sequence[Operation], logs: Mapping[str, CommittedLog]
) -> list[Violation]:
    """No command is applied twice, and none that was definitely refused is applied."""
    out: list[Violation] = []
    for market, log in logs.items():
        applications = _new_order_applications(log)
        for (user, cid), seqs in applications.items():
            if len(seqs) > 1:
                out.append(
                    Violation(
                        "duplicate",
                        market,
                        f"new_order {cid!r} of {user!r} applied {len(seqs)} times, at seqs {seqs}",
                    )
                )
        for seq in sorted(log.entries):
            for event in log.entries[seq].events:
                if event.get("reason") == "duplicate_client_order_id":
                    out.append(
                        Violation(
                            "duplicate",
                            market,
                            f"seq {seq}: a client_order_id was applied again ({event!r})",
                        )
                    )
        if log.has_commands():
            seen: dict[bytes, int] = {}
            for seq in sorted(log.entries):
                command = log.entries[seq].command
                assert command is not None
                if command.get("type") not in ("new_order", "cancel", "amend"):
                    continue
                key = _canonical(command)
                if key in seen:
                    out.append(
                        Violation(
                            "duplicate",
                            market,
                            f"command {command!r} applied at seqs {seen[key]} and {seq}",
                        )
                    )
                seen.setdefault(key, seq)
        committed_commands = (
            {_canonical(e.command) for e in log.entries.values() if e.command is not None}
            if log.has_commands()
            else set()
        )
        for op in ops:
            if op.market != market or op.outcome != "fail" or not op.is_command:
                continue
            op_cid = op.client_order_id
            applied = (
                op.op == "new_order" and op_cid is not None and (op.user, op_cid) in applications
            )
            applied = applied or _canonical(op.engine_command()) in committed_commands
            if applied and op.op != "cancel_all":
                out.append(
                    Violation(
                        "failed_but_applied",
                        market,
                        f"{op.op} was refused with {op.error!r} but is in the committed log",
                        (op.op_id,),
                    )
                )
    return out


def check_replicas(statuses: Mapping[str, Sequence[NodeStatus]]) -> list[Violation]:
    """Replicas of a group that report a digest at the same seq report the same digest."""
    out: list[Violation] = []
    for market, nodes in statuses.items():
        by_seq: dict[int, dict[str, str]] = defaultdict(dict)
        for node in nodes:
            if node.reachable and node.digest is not None:
                by_seq[node.digest_seq][node.name] = node.digest
            if node.diverged:
                out.append(Violation("divergence", market, f"{node.name} reports diverged state"))
        for seq, digests in sorted(by_seq.items()):
            if len(set(digests.values())) > 1:
                out.append(
                    Violation("divergence", market, f"digests differ at seq {seq}: {digests}")
                )
    return out


def check_replica_logs(market: str, logs: Mapping[str, CommittedLog]) -> list[Violation]:
    """Every copy of a market's committed log (one per replica, or offline) agrees seq by seq."""
    out: list[Violation] = []
    names = sorted(logs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            first = max(logs[a].first_seq, logs[b].first_seq)
            last = min(logs[a].last_seq, logs[b].last_seq)
            for seq in range(first, last + 1):
                if logs[a].entries[seq].events != logs[b].entries[seq].events:
                    out.append(
                        Violation(
                            "divergence",
                            market,
                            f"seq {seq}: {a} applied {list(logs[a].entries[seq].events)!r} but "
                            f"{b} applied {list(logs[b].entries[seq].events)!r}",
                        )
                    )
                    break
    return out


def check_checkpoints(
    market: str, checkpoints: Mapping[str, tuple[int, int, str]]
) -> list[Violation]:
    """Replicas that checkpointed at the same log index have the same state digest.

    ``checkpoints``: replica -> (log index, seq, digest), e.g. from ``admin snapshot``.
    """
    by_index: dict[int, dict[str, str]] = defaultdict(dict)
    for name, (index, _seq, digest) in checkpoints.items():
        by_index[index][name] = digest
    return [
        Violation("divergence", market, f"state digests differ at log index {index}: {digests}")
        for index, digests in sorted(by_index.items())
        if len(set(digests.values())) > 1
    ]


def check_replay(
    ops: Sequence[Operation],
    logs: Mapping[str, CommittedLog],
    engine_factory: Callable[[], EngineLike],
    prelude: Mapping[str, Sequence[dict[str, Any]]] | None = None,
    engine_restore: Callable[[bytes], EngineLike] | None = None,
) -> list[Violation]:
    """Replaying each market's committed commands through an engine gives the same events.

    The replay starts from a fresh engine at seq 1, after ``prelude`` (commands
    applied before seq 1: a market created outside the log). When the commands
    are known only after a snapshot (the replicas compacted their logs), it
    starts from that snapshot's state (``log.base``, through ``engine_restore``).
    It runs while the commands are known (``CommittedLog.replay_range``); logs
    with no starting point are skipped (``check_all`` says so).
    """
    out: list[Violation] = []
    told: dict[tuple[str, int], Operation] = {
        (op.market, op.seq): op
        for op in ops
        if op.outcome == "ok" and op.is_command and op.seq is not None
    }
    for market, log in logs.items():
        span = log.replay_range()
        if span is None:
            continue
        start, stop = span
        if start == 1:
            engine = engine_factory()
            for command in (prelude or {}).get(market, ()):
                engine.execute(command, 0)
        elif engine_restore is not None and log.base is not None:
            engine = engine_restore(log.base.snapshot)
        else:
            continue
        for seq in range(start, stop + 1):
            entry = log.entries[seq]
            events = [engine.encode(e) for e in engine.execute(entry.command, seq)]
            if events != list(entry.events):
                out.append(
                    Violation(
                        "replay_mismatch",
                        market,
                        f"seq {seq}: replay gives {events!r}, the replicas applied "
                        f"{list(entry.events)!r}",
                    )
                )
                break  # everything after the first divergence differs too
            op = told.get((market, seq))
            if op is not None and redact(events, op.user) != redact(op.events, op.user):
                out.append(
                    Violation(
                        "replay_mismatch",
                        market,
                        f"seq {seq}: replay gives {events!r}, the client was told "
                        f"{list(op.events)!r}",
                        (op.op_id,),
                    )
                )
    return out


def check_realtime(ops: Sequence[Operation]) -> list[Violation]:
    """Per market: a command acknowledged before another request was sent has a smaller seq.

    A later command must have a strictly larger seq; a later query must
    reflect it (its seq at least as large).
    """
    out: list[Violation] = []
    by_market: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        if op.outcome == "ok" and op.seq is not None:
            by_market[op.market].append(op)
    for market, market_ops in by_market.items():
        completed = sorted((o for o in market_ops if o.is_command), key=lambda o: o.complete_ns)
        invoked = sorted(market_ops, key=lambda o: o.invoke_ns)
        best: Operation | None = None
        index = 0
        for op in invoked:
            while index < len(completed) and completed[index].complete_ns < op.invoke_ns:
                candidate = completed[index]
                assert candidate.seq is not None
                if best is None or (best.seq or 0) < candidate.seq:
                    best = candidate
                index += 1
            if best is None or best.seq is None or op.seq is None:
                continue
            stale = op.seq <= best.seq if op.is_command else op.seq < best.seq
            if stale:
                out.append(
                    Violation(
                        "realtime_order",
                        market,
                        f"{op.op} sent after {best.op} seq {best.seq} was acknowledged got seq "
                        f"{op.seq}",
                        (best.op_id, op.op_id),
                    )
                )
    return out


def check_queries(ops: Sequence[Operation], logs: Mapping[str, CommittedLog]) -> list[Violation]:
    """Each ``orders`` result equals the user's live orders at the seq it reports."""
    out: list[Violation] = []
    queries: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        if op.op == "orders" and op.outcome == "ok" and op.seq is not None and op.events:
            queries[op.market].append(op)
    for market, market_queries in queries.items():
        log = logs.get(market)
        if log is None or log.first_seq != 1:
            continue
        model = OrderModel()
        applied = 0
        for op in sorted(market_queries, key=lambda o: o.seq or 0):
            assert op.seq is not None
            if op.seq > log.last_seq:
                out.append(
                    Violation(
                        "stale_read",
                        market,
                        f"orders reports seq {op.seq}, beyond the committed {log.last_seq}",
                        (op.op_id,),
                    )
                )
                continue
            while applied < op.seq:
                applied += 1
                model.apply(log.entries[applied].events)
            rows = op.events[0].get("orders", [])
            got = sorted(order_key(r) for r in rows if r.get("market", market) == market)
            want = model.live(market, op.user)
            if got != want:
                out.append(
                    Violation(
                        "query_mismatch",
                        market,
                        f"orders of {op.user!r} at seq {op.seq}: got {got!r}, the committed "
                        f"history implies {want!r}",
                        (op.op_id,),
                    )
                )
    return out


@attrs.frozen
class CheckReport:
    violations: tuple[Violation, ...]
    notes: tuple[str, ...]


def check_all(
    ops: Sequence[Operation],
    subscriptions: Sequence[Subscription],
    logs: Mapping[str, CommittedLog],
    statuses: Mapping[str, Sequence[NodeStatus]],
    engine_factory: Callable[[], EngineLike] | None = None,
    prelude: Mapping[str, Sequence[dict[str, Any]]] | None = None,
    engine_restore: Callable[[bytes], EngineLike] | None = None,
) -> CheckReport:
    """Run every check; ``notes`` say which ones could not run in full and why."""
    notes: list[str] = []
    for market, log in sorted(logs.items()):
        if log.first_seq != 1:
            notes.append(
                f"{market}: committed log readable only from seq {log.first_seq}; "
                "earlier acknowledgements and queries were not checked"
            )
        if engine_factory is None:
            continue
        span = log.replay_range()
        if span is None or (span[0] > 1 and engine_restore is None):
            notes.append(f"{market}: committed commands unavailable; replay check skipped")
            continue
        start, stop = span
        if start > 1:
            notes.append(
                f"{market}: the replicas compacted the commands before seq {start} into a "
                f"snapshot; replayed seq {start}..{stop} from that snapshot's state"
            )
        if stop < log.last_seq:
            notes.append(
                f"{market}: commands known only up to seq {stop} (the data directories' "
                f"commit index); seqs {stop + 1}..{log.last_seq} were not replayed"
            )
    violations = [
        *check_acknowledged(ops, logs),
        *check_no_duplicates(ops, logs),
        *check_replicas(statuses),
        *check_realtime(ops),
        *check_queries(ops, logs),
        *check_streams(subscriptions, logs),
        *check_fills_order(ops),
    ]
    if engine_factory is not None:
        violations += check_replay(ops, logs, engine_factory, prelude, engine_restore)
    return CheckReport(tuple(violations), tuple(notes))

"""The chaos checker on hand-made histories: a clean one passes, each violation is caught."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from chaos.checker import (
    CommittedEntry,
    CommittedLog,
    check_acknowledged,
    check_all,
    check_checkpoints,
    check_no_duplicates,
    check_queries,
    check_realtime,
    check_replay,
    check_replica_logs,
    check_replicas,
    check_streams,
    redact,
)
from chaos.committed import EngineBase
from chaos.fills_checks import ALL_MARKETS, check_fills_order
from chaos.history import Operation, Subscription
from clob.engine import Engine
from shard.node.api import NodeStatus

M = "BTC-USD"
CREATE = {"type": "create_market", "market": M, "tick_size": "0.01", "lot_size": "0.001"}


def _order(cid: str, side: str, price: str, qty: str) -> dict[str, Any]:
    return {
        "market": M,
        "client_order_id": cid,
        "side": side,
        "order_type": "limit",
        "price": price,
        "qty": qty,
    }


# (user, op, request fields) in the order the simulated clients send them, one at a time.
SCRIPT: list[tuple[str, str, dict[str, Any]]] = [
    ("alice", "new_order", _order("a1", "buy", "100.00", "1")),
    ("bob", "new_order", _order("b1", "sell", "100.00", "0.4")),
    ("alice", "orders", {"market": M}),
    ("bob", "new_order", _order("b2", "sell", "101.00", "0.5")),
    ("alice", "amend", {"market": M, "order_id": 1, "qty": "0.3"}),
    ("bob", "cancel", {"market": M, "order_id": 3}),
    ("bob", "orders", {"market": M}),
    ("alice", "new_order", _order("a2", "sell", "99.00", "0.2")),
    ("alice", "orders", {"market": M}),
]


@attrs.frozen
class Run:
    ops: list[Operation]
    subs: list[Subscription]
    logs: dict[str, CommittedLog]
    statuses: dict[str, list[NodeStatus]]


def simulate() -> Run:
    """A correct system: one engine, commands numbered from seq 2 (seq 1 creates the market)."""
    engine = Engine()
    entries = [
        CommittedEntry(1, tuple(engine.encode(e) for e in engine.execute(CREATE, 1)), CREATE)
    ]
    seq = 1
    ops = []
    clock = 1000
    for op_id, (user, op, fields) in enumerate(SCRIPT, start=1):
        command = {"type": op, "user": user, **fields}
        if op == "orders":
            events = [engine.encode(e) for e in engine.execute(command, seq)]
            at = seq
        else:
            seq += 1
            events = [engine.encode(e) for e in engine.execute(command, seq)]
            entries.append(CommittedEntry(seq, tuple(events), command))
            at = seq
        ops.append(
            Operation(
                op_id, f"c-{user}", user, op, M, fields, clock, clock + 5, "ok", at,
                tuple(redact(events, user)),
            )
        )  # fmt: skip
        clock += 10
    subs: list[Subscription] = []
    for user in ("alice", "bob"):
        sub = Subscription(len(subs) + 1, f"c-{user}", user, "user", None)
        for entry in entries:
            for event in entry.events:
                if event["type"] == "fill" and user in (event["maker_user"], event["taker_user"]):
                    shown = redact([event], user)[0]
                elif (
                    event["type"] in ("accepted", "cancelled", "amended") and event["user"] == user
                ):
                    shown = event
                else:
                    continue
                sub.record(
                    {
                        "channel": "user",
                        "market": M,
                        "type": "event",
                        "seq": entry.seq,
                        "event": shown,
                    }
                )
        subs.append(sub)
    trades = Subscription(3, "c-watch", "watch", "trades", M)
    for entry in entries:
        for event in entry.events:
            if event["type"] == "fill":
                trades.record(
                    {"channel": "trades", "market": M, "type": "trade"}
                    | {k: event[k] for k in ("seq", "trade_id", "price", "qty", "taker_side")}
                )
    subs.append(trades)
    digest = engine.digest().hex()
    statuses = [
        NodeStatus(f"r{i}", True, applied_seq=seq, digest=digest, digest_seq=seq) for i in range(3)
    ]
    return Run(ops, subs, {M: CommittedLog.from_entries(M, entries)}, {M: statuses})


def _events_only(log: CommittedLog) -> CommittedLog:
    return CommittedLog(
        log.market,
        {s: attrs.evolve(e, command=None) for s, e in log.entries.items()},
        log.first_seq,
        log.last_seq,
    )


def _with_entries(log: CommittedLog, entries: list[CommittedEntry]) -> CommittedLog:
    return CommittedLog.from_entries(log.market, [*log.entries.values(), *entries])


def test_clean_history_passes_every_check() -> None:
    run = simulate()
    assert len(run.logs[M].entries) == 7  # the script really produced a history
    assert any(e["type"] == "fill" for op in run.ops for e in op.events)
    report = check_all(run.ops, run.subs, run.logs, run.statuses, Engine)
    assert report.violations == ()
    assert report.notes == ()
    events_only = check_all(run.ops, run.subs, {M: _events_only(run.logs[M])}, run.statuses)
    assert events_only.violations == ()


def test_lost_acknowledgement_is_caught() -> None:
    run = simulate()
    last = run.logs[M].last_seq
    truncated = CommittedLog.from_entries(
        M, [e for s, e in run.logs[M].entries.items() if s < last]
    )
    found = check_acknowledged(run.ops, {M: truncated})
    assert [v.kind for v in found] == ["lost_ack"]


def test_wrong_told_events_are_caught() -> None:
    run = simulate()
    op = run.ops[0]
    told = [dict(op.events[0], price="99.00")]
    run.ops[0] = attrs.evolve(op, events=tuple(told))
    assert [v.kind for v in check_acknowledged(run.ops, run.logs)] == ["wrong_result"]
    # the replay check catches it too: the client was told something the engine never said
    assert [v.kind for v in check_replay(run.ops, run.logs, Engine)] == ["replay_mismatch"]


def test_two_acks_with_one_seq_are_caught() -> None:
    run = simulate()
    run.ops[1] = attrs.evolve(run.ops[1], seq=run.ops[0].seq, events=run.ops[0].events)
    kinds = {v.kind for v in check_acknowledged(run.ops, run.logs)}
    assert "seq_reused" in kinds


@pytest.mark.parametrize("with_commands", [True, False])
def test_double_application_is_caught(with_commands: bool) -> None:
    run = simulate()
    log = run.logs[M]
    # the gateway's retry of bob's b2 order was applied a second time after it was cancelled
    again = [CommittedEntry(log.last_seq + 1, (), log.entries[4].command)]
    engine = Engine()
    for seq in range(1, log.last_seq + 1):
        engine.execute(log.entries[seq].command, seq)
    assert again[0].command is not None
    events = tuple(engine.encode(e) for e in engine.execute(again[0].command, log.last_seq + 1))
    again = [attrs.evolve(again[0], events=events)]
    doubled = _with_entries(log, again)
    if not with_commands:
        doubled = _events_only(doubled)
    found = check_no_duplicates(run.ops, {M: doubled})
    assert found and {v.kind for v in found} == {"duplicate"}


def test_duplicate_client_order_id_rejection_is_caught() -> None:
    run = simulate()
    log = run.logs[M]
    rejected = {
        "type": "rejected", "seq": log.last_seq + 1, "reason": "duplicate_client_order_id",
        "message": "x", "market": M, "user": "alice", "client_order_id": "a1",
    }  # fmt: skip
    doubled = _events_only(_with_entries(log, [CommittedEntry(log.last_seq + 1, (rejected,))]))
    assert {v.kind for v in check_no_duplicates(run.ops, {M: doubled})} == {"duplicate"}


def test_refused_command_that_was_applied_is_caught() -> None:
    run = simulate()
    refused = attrs.evolve(run.ops[3], outcome="fail", seq=None, events=(), error="unavailable")
    run.ops[3] = refused
    for log in (run.logs[M], _events_only(run.logs[M])):
        found = check_no_duplicates(run.ops, {M: log})
        assert [v.kind for v in found] == ["failed_but_applied"]
        assert found[0].op_ids == (refused.op_id,)
    # the same refusal is fine when the command is really absent from the log
    absent = CommittedLog.from_entries(M, [e for s, e in run.logs[M].entries.items() if s < 4])
    assert check_no_duplicates([*run.ops[:3], refused], {M: absent}) == []


def test_indeterminate_commands_may_or_may_not_be_applied() -> None:
    run = simulate()
    run.ops[3] = attrs.evolve(run.ops[3], outcome="indeterminate", seq=None, events=())
    report = check_all(run.ops, run.subs, run.logs, run.statuses, Engine)
    assert report.violations == ()


def test_replica_divergence_is_caught() -> None:
    run = simulate()
    nodes = run.statuses[M]
    nodes[2] = attrs.evolve(nodes[2], digest="00" * 32)
    assert [v.kind for v in check_replicas(run.statuses)] == ["divergence"]
    # replicas at different seqs are not compared with each other
    nodes[2] = attrs.evolve(nodes[2], digest_seq=nodes[2].digest_seq - 1)
    assert check_replicas(run.statuses) == []


def test_replay_mismatch_of_committed_events_is_caught() -> None:
    run = simulate()
    log = run.logs[M]
    entry = log.entries[3]
    bad = attrs.evolve(entry, events=(dict(entry.events[0], order_id=7), *entry.events[1:]))
    tampered = CommittedLog(M, {**log.entries, 3: bad}, log.first_seq, log.last_seq)
    found = check_replay([], {M: tampered}, Engine)
    assert [v.kind for v in found] == ["replay_mismatch"]
    assert "seq 3" in found[0].message


def test_realtime_order_violation_is_caught() -> None:
    run = simulate()
    # bob's cancel (seq 6) was acknowledged before alice's new order was sent, yet the order
    # claims an earlier seq: the system reordered acknowledged commands
    late = next(op for op in run.ops if op.client_order_id == "a2")
    run.ops[run.ops.index(late)] = attrs.evolve(late, seq=5)
    kinds = [v.kind for v in check_realtime(run.ops)]
    assert kinds == ["realtime_order"]
    # overlapping requests may be ordered either way
    overlapping = [attrs.evolve(op, invoke_ns=0) for op in run.ops]
    assert check_realtime(overlapping) == []


def test_stale_query_is_caught() -> None:
    run = simulate()
    query = run.ops[-1]
    # a read that does not reflect alice's acknowledged sell order a2
    assert query.seq is not None
    stale = attrs.evolve(query, seq=query.seq - 1)
    run.ops[-1] = stale
    assert [v.kind for v in check_realtime(run.ops)] == ["realtime_order"]


def test_told_other_users_name_is_caught() -> None:
    run = simulate()
    op = run.ops[1]  # bob's order that traded against alice
    fill = next(e for e in op.events if e["type"] == "fill")
    assert "maker_user" not in fill
    leaked = tuple(dict(e, maker_user="alice") if e is fill else e for e in op.events)
    run.ops[1] = attrs.evolve(op, events=leaked)
    assert [v.kind for v in check_acknowledged(run.ops, run.logs)] == ["privacy"]


def test_query_result_that_differs_from_history_is_caught() -> None:
    run = simulate()
    query = run.ops[2]  # alice's orders after the fill: one order, 0.600 left
    row = query.events[0]["orders"][0]
    wrong = dict(query.events[0], orders=[dict(row, qty="1.000", filled_qty="0")])
    run.ops[2] = attrs.evolve(query, events=(wrong,))
    found = check_queries(run.ops, run.logs)
    assert [v.kind for v in found] == ["query_mismatch"]
    missing = dict(query.events[0], orders=[])
    run.ops[2] = attrs.evolve(query, events=(missing,))
    assert [v.kind for v in check_queries(run.ops, run.logs)] == ["query_mismatch"]


def test_stream_gap_is_caught() -> None:
    run = simulate()
    alice = run.subs[0]
    assert len(alice.messages) >= 4
    del alice.messages[1]  # the fill of seq 3 never reached alice
    found = check_streams(run.subs, run.logs)
    assert [v.kind for v in found] == ["stream"]
    assert "gap" in found[0].message


def test_stream_event_differing_from_committed_is_caught() -> None:
    run = simulate()
    trades = run.subs[2]
    trades.messages[0] = dict(trades.messages[0], qty="0.500")
    assert [v.kind for v in check_streams(run.subs, run.logs)] == ["stream"]


def test_stream_leaking_names_or_wrong_values_is_caught() -> None:
    run = simulate()
    alice = run.subs[0]
    fill = next(m for m in alice.messages if m["event"]["type"] == "fill")
    assert "taker_user" not in fill["event"]
    where = alice.messages.index(fill)
    alice.messages[where] = dict(fill, event=dict(fill["event"], taker_user="bob"))
    assert [v.kind for v in check_streams(run.subs, run.logs)] == ["privacy"]
    alice.messages[where] = dict(fill, event=dict(fill["event"], price="1.00"))
    assert [v.kind for v in check_streams(run.subs, run.logs)] == ["stream"]


def test_log_readable_only_from_later_seq_is_noted_not_flagged() -> None:
    run = simulate()
    partial = CommittedLog.from_entries(M, [e for s, e in run.logs[M].entries.items() if s >= 4])
    report = check_all(run.ops, run.subs, {M: partial}, run.statuses, Engine)
    assert report.violations == ()
    assert any("from seq 4" in note for note in report.notes)


def test_replica_logs_that_disagree_are_caught() -> None:
    run = simulate()
    log = run.logs[M]
    copy = CommittedLog.from_entries(M, list(log.entries.values()))
    assert check_replica_logs(M, {"r1": log, "r2": copy}) == []
    entry = log.entries[5]
    other = attrs.evolve(entry, events=(dict(entry.events[0], qty="0.200"),))
    forked = CommittedLog(M, {**log.entries, 5: other}, log.first_seq, log.last_seq)
    found = check_replica_logs(M, {"r1": log, "r2": copy, "r3": forked})
    assert [v.kind for v in found] == ["divergence", "divergence"]
    assert all("seq 5" in v.message for v in found)


def test_checkpoint_digests_that_differ_are_caught() -> None:
    same = {"r1": (40, 17, "ab"), "r2": (40, 17, "ab"), "r3": (41, 17, "cd")}
    assert check_checkpoints(M, same) == []  # r3 is at another index: not comparable
    forked = {**same, "r2": (40, 17, "ef")}
    found = check_checkpoints(M, forked)
    assert [v.kind for v in found] == ["divergence"] and "index 40" in found[0].message


def test_stream_sessions_may_cut_a_command_at_either_end_but_not_inside() -> None:
    run = simulate()
    alice, bob = run.subs[0], run.subs[1]
    # alice's last command (seq 7) and bob's first (seq 3) each produced two events for them
    assert [m["seq"] for m in alice.messages[-2:]] == [7, 7]
    assert [m["seq"] for m in bob.messages[:2]] == [3, 3]
    # a session that ended between the two events of its last command: fine
    cut_tail = Subscription(9, "c-alice", "alice", "user", None, alice.messages[:-1])
    assert check_streams([cut_tail], run.logs) == []
    # a session that began between the two events of its first command: fine
    cut_head = Subscription(10, "c-bob", "bob", "user", None, bob.messages[1:])
    assert check_streams([cut_head], run.logs) == []
    # an event missing inside the session is a gap
    inner = Subscription(
        11, "c-alice", "alice", "user", None, alice.messages[:1] + alice.messages[2:]
    )
    assert [v.kind for v in check_streams([inner], run.logs)] == ["stream"]


def test_commands_compacted_into_a_snapshot_are_replayed_from_its_state() -> None:
    run = simulate()
    log = run.logs[M]
    engine = Engine()
    for seq in (1, 2, 3):
        engine.execute(log.entries[seq].command, seq)
    compacted = CommittedLog.from_entries(
        M,
        [attrs.evolve(e, command=None) if s <= 3 else e for s, e in log.entries.items()],
        EngineBase(3, engine.snapshot()),
    )
    assert compacted.replay_range() == (4, log.last_seq)
    report = check_all(
        run.ops, run.subs, {M: compacted}, run.statuses, Engine, None, Engine.restore
    )
    assert report.violations == ()
    assert any(f"replayed seq 4..{log.last_seq}" in note for note in report.notes)
    # the same log cannot be replayed without a way to restore the snapshot: said so
    skipped = check_all(run.ops, run.subs, {M: compacted}, run.statuses, Engine)
    assert any("replay check skipped" in note for note in skipped.notes)
    # a told result that the replay from the snapshot contradicts is caught
    last = max(i for i, op in enumerate(run.ops) if op.op == "new_order")  # after the snapshot
    told = run.ops[last]
    lying = attrs.evolve(told, events=(dict(told.events[0], order_id=99), *told.events[1:]))
    ops = [*run.ops[:last], lying, *run.ops[last + 1 :]]
    found = check_replay(ops, {M: compacted}, Engine, None, Engine.restore)
    assert [v.kind for v in found] == ["replay_mismatch"] and found[0].op_ids == (told.op_id,)


def test_a_snapshot_after_the_known_commands_gives_no_replay() -> None:
    log = simulate().logs[M]
    later = CommittedLog.from_entries(
        M,
        [attrs.evolve(e, command=None) if s <= 5 else e for s, e in log.entries.items()],
        EngineBase(2, Engine().snapshot()),  # commands 3..5 unknown: nothing to replay from
    )
    assert later.replay_range() is None


def test_replay_stops_where_the_known_commands_stop() -> None:
    """A data directory's commit index may lag the live replicas: the known prefix is
    replayed (and a bad event in it caught), the rest is noted."""
    run = simulate()
    log = run.logs[M]
    short = CommittedLog.from_entries(
        M, [attrs.evolve(e, command=None) if s >= 6 else e for s, e in log.entries.items()]
    )
    assert short.replay_range() == (1, 5)
    report = check_all(run.ops, run.subs, {M: short}, run.statuses, Engine, None, Engine.restore)
    assert report.violations == ()
    assert any(f"seqs 6..{log.last_seq} were not replayed" in note for note in report.notes)
    entry = short.entries[5]
    bad = attrs.evolve(entry, events=(dict(entry.events[0], qty="9"), *entry.events[1:]))
    tampered = CommittedLog(M, {**short.entries, 5: bad}, short.first_seq, short.last_seq)
    assert [v.kind for v in check_replay([], {M: tampered}, Engine)] == ["replay_mismatch"]


def _taker(op_id: int, market: str, trade_id: int, invoked: int, acked: int) -> Operation:
    fill = {"type": "fill", "market": market, "trade_id": trade_id, "taker_user": "bob"}
    request = {"market": market}
    return Operation(op_id, "c-bob", "bob", "new_order", market, request, invoked, acked, "ok", 1,
                     ({"type": "accepted", "market": market}, fill))  # fmt: skip


def _fills_query(op_id: int, trades: list[tuple[str, int]]) -> Operation:
    result = {"type": "fills", "fills": [{"market": m, "trade_id": t} for m, t in trades]}
    return Operation(op_id, "c-bob", "bob", "fills", ALL_MARKETS, {}, 900, 905, "ok", 3,
                     (result,))  # fmt: skip


def test_fills_without_market_must_list_trades_in_the_order_they_happened() -> None:
    made = [
        _taker(1, "ETH-USD", 1, 100, 110),
        _taker(2, "BTC-USD", 1, 200, 210),  # sent after ETH 1 was acknowledged
        _taker(3, "ETH-USD", 2, 205, 215),  # overlaps BTC 1: either order is right
    ]
    good = [("ETH-USD", 1), ("BTC-USD", 1), ("ETH-USD", 2)]
    assert check_fills_order([*made, _fills_query(4, good)]) == []
    overlapping = [("ETH-USD", 1), ("ETH-USD", 2), ("BTC-USD", 1)]
    assert check_fills_order([*made, _fills_query(4, overlapping)]) == []
    late = check_fills_order([*made, _fills_query(4, [("BTC-USD", 1), ("ETH-USD", 1)])])
    assert [v.kind for v in late] == ["fills_order"] and late[0].op_ids == (4,)
    assert "('ETH-USD', 1) was acknowledged before ('BTC-USD', 1)" in late[0].message
    backwards = check_fills_order([*made, _fills_query(4, [("ETH-USD", 2), ("ETH-USD", 1)])])
    # out of trade-id order within the market, and against real time
    assert [(v.kind, v.market) for v in backwards] == [
        ("fills_order", "ETH-USD"),
        ("fills_order", None),
    ]
    # a trade whose command's outcome is unknown has no window: checked within its market only
    unknown = attrs.evolve(made[0], outcome="indeterminate")
    query = _fills_query(4, [("BTC-USD", 1), ("ETH-USD", 1)])
    assert check_fills_order([unknown, *made[1:], query]) == []
    # check_all runs it (its other checks complain here that these markets have no logs)
    kinds = {v.kind for v in check_all([*made, query], [], {}, {}).violations}
    assert "fills_order" in kinds
    assert "fills_order" not in {
        v.kind for v in check_all([*made, _fills_query(4, good)], [], {}, {}).violations
    }

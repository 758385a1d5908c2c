"""The replica's per-command results: what clients receive is unchanged, snapshots agree.

``EngineApplication`` encodes a command's events in one compiled call
(``clob.codec.encode_events``) and keeps the engine's level-change tuples
as they are. What a client decodes from a reply or a subscription push
must be exactly what it was with lists, and replicas must still agree byte
for byte on their snapshots, also after a restore.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from cli.engine_workload import WorkloadGenerator
from clob.codec import encode, encode_events
from clob.engine import Engine
from config.schema import ClusterConfig, MarketConfig, ReplicaConfig
from shard.engineapp import EngineApplication
from shard.node.clientserver import ClientConnection
from shard.node.framing import FrameDecoder, encode_frames
from shard.node.runtime import Replica
from shard.proposals import encode_rows
from shard.records import Entry, EntryKind
from shard.sessions import REGISTER, Verdict
from shard.statemachine import ReplicatedStateMachine

ALL_EVENT_TYPES = {
    "accepted",
    "amended",
    "book",
    "cancelled",
    "fill",
    "fills",
    "market_created",
    "orders",
    "rejected",
}


def _commands(seed: int, count: int) -> list[Any]:
    setup, mixed = WorkloadGenerator(seed, users=50, floor=40).build(count)
    return [*setup, *mixed]


def test_encode_events_encodes_each_event_as_encode_does() -> None:
    engine = Engine()
    seen: set[str] = set()
    for seq, command in enumerate([*_commands(5, 3000), {"type": "nope"}, "junk"], 1):
        events = engine.execute(command, seq)
        rows = encode_events(events, engine.markets)
        assert rows == [encode(e, engine.markets) for e in events]
        seen.update(row["type"] for row in rows)
    assert seen == ALL_EVENT_TYPES


def _register(rsm: ReplicatedStateMachine, label: str) -> str:
    [outcome] = rsm.apply([_entry(rsm, [[label, REGISTER, 0, b""]])])
    assert outcome.verdict is Verdict.REGISTERED
    return str(outcome.result)


def _entry(rsm: ReplicatedStateMachine, rows: list[list[Any]]) -> Entry:
    return Entry(1, rsm.applied_index + 1, EntryKind.NORMAL, encode_rows(rows))


def _packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def test_results_pack_as_before_and_survive_a_restore_byte_for_byte() -> None:
    commands = [orjson.dumps(c) for c in _commands(9, 400)]
    rsm = ReplicatedStateMachine(EngineApplication())
    client = _register(rsm, "c")
    reference = Engine()
    outcomes = []
    for start in range(0, len(commands), 64):
        batch = commands[start : start + 64]
        rows = [[client, start + i + 1, 0, command] for i, command in enumerate(batch)]
        outcomes += rsm.apply([_entry(rsm, rows)])
    for seq, (outcome, command) in enumerate(zip(outcomes, commands, strict=True), 1):
        assert outcome.verdict is Verdict.NEW and outcome.seq == seq
        events = [reference.encode(e) for e in reference.execute(orjson.loads(command), seq)]
        levels = [list(change) for change in reference.take_level_changes()]
        assert outcome.result[0] == events
        assert _packed(outcome.result) == _packed([events, levels])  # what a client gets
    snapshot = rsm.snapshot()
    copy = ReplicatedStateMachine(EngineApplication())
    copy.restore(snapshot)
    assert copy.snapshot() == snapshot
    # a retry answered by the restored copy gets the first answer, exactly
    retry = [[client, 5, 0, commands[4]]]
    [again] = copy.apply([_entry(copy, retry)])
    [original] = rsm.apply([_entry(rsm, retry)])
    assert again.verdict is original.verdict is Verdict.DUPLICATE
    assert again.seq == original.seq == outcomes[4].seq
    assert _packed(again.result) == _packed(original.result) == _packed(outcomes[4].result)
    assert copy.snapshot() == rsm.snapshot()


def _replica() -> Replica:
    members = tuple(
        ReplicaConfig(f"r{i}", f"127.0.0.1:{1 + i}", f"127.0.0.1:{10 + i}", f"/nonexistent/{i}")
        for i in range(3)
    )
    cluster = ClusterConfig("results", (MarketConfig("BTC-USD", "0.01", "0.001", members),))
    return Replica(cluster, "r0")


def _sent(conn: ClientConnection) -> list[Any]:
    """Every frame queued on ``conn``, packed as its writer packs them and decoded."""
    decoder = FrameDecoder()
    decoder.feed(encode_frames(list(conn._queue)))
    conn._queue.clear()
    return list(decoder.messages())


def test_replies_and_pushes_carry_events_as_maps_and_level_changes_as_arrays() -> None:
    commands = [orjson.dumps(c) for c in _commands(11, 150)]
    replica = _replica()
    client = _register(replica.rsm, "c")
    replica.ring.reset(replica.rsm.seq)
    waiter = ClientConnection(None, "client")  # type: ignore[arg-type]
    subscriber = ClientConnection(None, "subscriber")  # type: ignore[arg-type]
    replica.ring.subscribe(1, subscriber, subscriber.replier("sub"))
    rows = [[client, i + 1, 0, command] for i, command in enumerate(commands)]
    for i in range(len(rows)):
        replica.waiters.add((client, i + 1), waiter.replier(i))
    replica._apply_segment((_entry(replica.rsm, rows),))
    reference = Engine()
    expected: list[tuple[int, list[dict[str, Any]], list[list[str]]]] = []
    for seq, command in enumerate(commands, 1):
        events = [reference.encode(e) for e in reference.execute(orjson.loads(command), seq)]
        expected.append((seq, events, [list(c) for c in reference.take_level_changes()]))
    assert any(levels for _, _, levels in expected)
    assert _sent(waiter) == [
        {"t": "result", "seq": seq, "events": events, "rid": seq - 1} for seq, events, _ in expected
    ]
    pushed = _sent(subscriber)
    assert pushed[0] == {"t": "ok", "rid": "sub"}
    assert [item for push in pushed[1:] for item in push["items"]] == [list(i) for i in expected]
    # a subscriber arriving later gets the same items from the ring's backlog
    late = ClientConnection(None, "late")  # type: ignore[arg-type]
    replica.ring.subscribe(1, late, late.replier("late"))
    assert [item for push in _sent(late)[1:] for item in push["items"]] == [
        list(i) for i in expected
    ]

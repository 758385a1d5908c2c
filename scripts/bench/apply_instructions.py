"""Machine instructions per applied command on a replica, counted by valgrind's callgrind.

The replica's cost per command is the replicated state machine's
``apply_rows`` (decode the proposal batch, session table, engine, event
encoding) and, with ``--with-publish``, the runtime's work after it: the
ring items and subscription push, the replies to waiting clients and their
msgpack frames, through the runtime's own ``Replica._apply_segment`` and
the client connections' frame encoding (docs/benchmarks.md, section 4).

    scripts/bench/apply_instructions.py [--seed 7] [--commands 20000] [--batch 64]
        [--clients 8] [--with-publish [--follower] [--subscribers 1]]

Builds the seeded `clob bench engine` workload in this process, applies its
setup (markets and a resting book) through a state machine and snapshots it,
and wraps the mixed commands as committed log entries of ``--batch``
proposals each (``shard.proposals.encode_rows``, as the runtime proposes),
from ``--clients`` clients that acknowledge in steps of 64 as
``ShardClient`` does. A second process under callgrind restores the
snapshot, applies the first tenth of the entries to warm the session table,
and counts only the rest (collection is switched on inside one
``functools.reduce`` call around the measured loop). The replica's GC
settings (``tune_for_throughput``) apply. Needs valgrind and the compiled
engine (`make native`).
"""

from __future__ import annotations

import argparse
import functools
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_ACK_STEP = 64  # ShardClient raises its ack in steps of 64
_WARM_FRACTION = 10  # one entry in this many is applied before counting starts


def _register(rsm: Any, labels: list[str]) -> list[str]:
    """Session ids for ``labels``: registered through the log where sessions need it."""
    from shard import sessions
    from shard.proposals import encode_rows
    from shard.records import Entry, EntryKind

    register = getattr(sessions, "REGISTER", None)
    if register is None:  # a tree from before registered sessions: any id will do
        return labels
    rows = [[label, register, 0, b""] for label in labels]
    entry = Entry(1, rsm.applied_index + 1, EntryKind.NORMAL, encode_rows(rows))
    return [outcome.result for outcome in rsm.apply([entry])]


def _entries(
    mixed: list[dict[str, Any]], first_index: int, batch: int, clients: list[str], window: int
) -> list[Any]:
    """The mixed commands as NORMAL entries of ``batch`` proposals, round robin over clients."""
    import orjson

    from shard.proposals import encode_rows
    from shard.records import Entry, EntryKind

    rows: list[list[Any]] = []
    next_req = [1] * len(clients)
    for i, command in enumerate(mixed):
        client = i % len(clients)
        req = next_req[client]
        next_req[client] += 1
        low = max(1, req - window)
        rows.append([clients[client], req, low - low % _ACK_STEP, orjson.dumps(command)])
    from shard import proposals

    # the leader's stamp heads each batch (a tree from before stamps has none)
    stamp = getattr(proposals, "stamp_row", None)
    heads = [] if stamp is None else [stamp(1_764_000_000_000_000)]
    return [
        Entry(
            1,
            first_index + n,
            EntryKind.NORMAL,
            encode_rows([*heads, *rows[start : start + batch]]),
        )
        for n, start in enumerate(range(0, len(rows), batch))
    ]


def _replica(snapshot: bytes, subscribers: int) -> tuple[Any, list[Any]]:
    """A Replica that never serves, restored from ``snapshot``, with subscriber connections."""
    from config.schema import ClusterConfig, MarketConfig, ReplicaConfig
    from shard.node.clientserver import ClientConnection
    from shard.node.runtime import Replica

    members = tuple(
        ReplicaConfig(
            f"r{i}", f"127.0.0.1:{1000 + i}", f"127.0.0.1:{2000 + i}", f"/nonexistent/{i}"
        )
        for i in range(3)
    )
    cluster = ClusterConfig("apply-bench", (MarketConfig("BTC-USD", "0.01", "0.001", members),))
    replica = Replica(cluster, "r0")
    replica.rsm.restore(snapshot)
    replica.ring.reset(replica.rsm.seq)
    subs = [ClientConnection(None, f"sub{i}") for i in range(subscribers)]  # type: ignore[arg-type]
    for i, conn in enumerate(subs):
        replica.ring.subscribe(replica.rsm.seq + 1, conn, conn.replier(f"sub{i}"))
    return replica, subs


def _measured(workload: Path) -> None:
    """The process under callgrind: restore, warm up, then apply the counted entries."""
    from shard.engineapp import EngineApplication
    from shard.node.clientserver import ClientConnection
    from shard.node.framing import encode_frames
    from shard.node.gctuning import tune_for_throughput
    from shard.proposals import decode_rows
    from shard.statemachine import ReplicatedStateMachine

    snapshot, entries, options = pickle.loads(workload.read_bytes())
    warm = len(entries) // _WARM_FRACTION
    if not options["with_publish"]:
        rsm = ReplicatedStateMachine(EngineApplication())
        rsm.restore(snapshot)
        apply_rows = rsm.apply_rows

        def apply(entry: Any) -> None:
            apply_rows((entry,))

    else:
        replica, subs = _replica(snapshot, options["subscribers"])
        leader = ClientConnection(None, "leader")  # type: ignore[arg-type]
        if not options["follower"]:  # a leader has a client waiting for every command
            for rid, entry in enumerate(entries):
                for client, req, _, _ in decode_rows(entry.data):
                    replica._waiting[(client, req)] = [leader.replier(rid)]
        conns = [leader, *subs]
        segment = replica._apply_segment

        def apply(entry: Any) -> None:
            segment((entry,))
            for conn in conns:  # what each connection's write loop packs and sends
                queue = conn._queue
                if queue:
                    encode_frames([queue.popleft() for _ in range(len(queue))])

    for entry in entries[:warm]:
        apply(entry)
    counted = entries[warm:]
    tune_for_throughput()  # collections during the loop are counted: the replica pays them too

    def run() -> int:
        for entry in counted:
            apply(entry)
        return 0

    functools.reduce(lambda a, b: run(), [0, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64, help="proposals per log entry")
    parser.add_argument("--clients", type=int, default=8, help="client ids, round robin")
    parser.add_argument("--window", type=int, default=250, help="requests in flight per client")
    parser.add_argument("--with-publish", action="store_true", help="add the runtime's work")
    parser.add_argument("--follower", action="store_true", help="nobody waits for replies")
    parser.add_argument("--subscribers", type=int, default=1, help="with --with-publish")
    parser.add_argument("--keep", type=Path, help="copy the callgrind output here")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        _measured(args.measure)
        return
    import orjson

    import clob
    from cli.engine_workload import WorkloadGenerator
    from shard.engineapp import EngineApplication
    from shard.proposals import decode_rows, encode_rows
    from shard.records import Entry, EntryKind
    from shard.statemachine import ReplicatedStateMachine

    if clob.build_kind() != "compiled (mypyc)" or shutil.which("valgrind") is None:
        sys.exit("needs valgrind and the compiled engine (make native)")
    setup, mixed = WorkloadGenerator(args.seed).build(args.commands)
    rsm = ReplicatedStateMachine(EngineApplication())
    [setup_client] = _register(rsm, ["setup"])
    setup_rows = [[setup_client, i, i, orjson.dumps(c)] for i, c in enumerate(setup, 1)]
    rsm.apply(
        Entry(1, n, EntryKind.NORMAL, encode_rows(setup_rows[start : start + args.batch]))
        for n, start in enumerate(range(0, len(setup_rows), args.batch), rsm.applied_index + 1)
    )
    assert rsm.seq == len(setup), "the setup commands were not applied"
    clients = _register(rsm, [f"bench-{i}" for i in range(args.clients)])
    entries = _entries(mixed, rsm.applied_index + 1, args.batch, clients, args.window)
    options = {
        "with_publish": args.with_publish,
        "follower": args.follower,
        "subscribers": args.subscribers,
    }
    counted = sum(  # client commands only (request numbers count from 1), not stamps
        sum(row[1] >= 1 for row in decode_rows(e.data))
        for e in entries[len(entries) // _WARM_FRACTION :]
    )
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "workload.pickle"
        workload.write_bytes(pickle.dumps((rsm.snapshot(), entries, options)))
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             "--toggle-collect=functools_reduce", sys.executable, __file__,
             "--measure", str(workload)],
            capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        if run.returncode != 0:
            sys.exit(f"the measured process failed:\n{run.stderr[-3000:]}")
        if args.keep is not None:
            shutil.copyfile(out, args.keep)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        sys.exit("callgrind printed no instruction count:\n" + run.stderr[-2000:])
    total = int(found.group(1))
    what = "apply_rows"
    if args.with_publish:
        role = "follower" if args.follower else "leader"
        what = f"apply + publish + replies ({role}, {args.subscribers} subscriber(s))"
    print(
        f"seed {args.seed}, {counted:,} counted commands of {len(mixed):,} "
        f"(batches of {args.batch}, {args.clients} clients), after {len(setup):,} setup ones"
    )
    print(f"instructions in {what}: {total:,} ({total / counted:,.0f} per applied command)")


if __name__ == "__main__":
    main()

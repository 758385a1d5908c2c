"""Committed commands/s of a 3-node PySyncObj group on 127.0.0.1 (comparison figure).

Runs in the separate bench venv (scripts/bench-compare.sh), never in the
project's: PySyncObj is a comparison point, not a dependency. The parent
process starts three node processes (this same file with ``--node``); each
replicates a counter whose ``add(n)`` is the command. The node that becomes
leader drives the load itself (so no command pays a forwarding hop), keeping
``--window`` commands in flight, and reports committed commands/s and the
submit-to-callback latency. Followers exit when the parent stops them.

    python scripts/bench/pysyncobj_group.py --seconds 10 --window 1000
    python scripts/bench/pysyncobj_group.py --journal   # with PySyncObj's mmap journal

PySyncObj's journal writes through mmap and does not fsync per commit, so it
is comparable to our ``durability = "none"`` mode, not to ``fsync``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated


class Counter(SyncObj):  # type: ignore[misc]
    """The replicated state: one integer; ``add`` is the command under test."""

    def __init__(self, self_addr: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_addr, partners, conf)
        self.value = 0

    @replicated  # type: ignore[misc]
    def add(self, n: int) -> int:
        self.value += n
        return self.value


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


def _drive(node: Counter, seconds: float, window: int) -> dict[str, Any]:
    """Keep ``window`` commands in flight for ``seconds``; count the committed ones."""
    slots = threading.Semaphore(window)
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]

    def submit() -> None:
        started = time.perf_counter()

        def done(result: Any, error: int) -> None:
            with lock:
                if error:
                    failures[0] += 1
                else:
                    latencies.append(time.perf_counter() - started)
            slots.release()

        node.add(1, callback=done)

    warmup_end = time.perf_counter() + 1.0
    while time.perf_counter() < warmup_end:
        slots.acquire()
        submit()
    for _ in range(window):  # drain the warm-up
        slots.acquire()
    for _ in range(window):
        slots.release()
    with lock:
        latencies.clear()
    begin = time.perf_counter()
    end = begin + seconds
    submitted = 0
    while time.perf_counter() < end:
        slots.acquire()
        submit()
        submitted += 1
    for _ in range(window):
        slots.acquire()
    elapsed = time.perf_counter() - begin
    with lock:
        ordered = sorted(latencies)
    return {
        "committed": len(ordered),
        "failed": failures[0],
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(_percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(_percentile(ordered, 0.99) * 1000, 3),
        "window": window,
    }


def run_node(args: argparse.Namespace) -> None:
    ports = [int(p) for p in args.ports.split(",")]
    addrs = [f"127.0.0.1:{p}" for p in ports]
    me = addrs[args.node]
    conf_kwargs: dict[str, Any] = {"dynamicMembershipChange": False}
    if args.journal:
        conf_kwargs["journalFile"] = os.path.join(args.dir, f"journal-{args.node}")
    node = Counter(me, [a for a in addrs if a != me], SyncObjConf(**conf_kwargs))
    deadline = time.monotonic() + 30
    while node._getLeader() is None or not node.isReady():
        if time.monotonic() > deadline:
            raise SystemExit("no leader elected in 30 s")
        time.sleep(0.05)
    leader = str(node._getLeader())
    if leader != me:
        while True:  # a follower serves until the parent stops it
            time.sleep(1)
    result = _drive(node, args.seconds, args.window)
    result["value"] = node.value
    print(json.dumps(result), flush=True)
    node.destroy()


def run_group(args: argparse.Namespace) -> dict[str, Any]:
    ports = _free_ports(3)
    with tempfile.TemporaryDirectory(prefix="pysyncobj-bench-") as tmp:
        procs = []
        for index in range(3):
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--node",
                str(index),
                "--ports",
                ",".join(map(str, ports)),
                "--seconds",
                str(args.seconds),
                "--window",
                str(args.window),
                "--dir",
                tmp,
            ]
            if args.journal:
                cmd.append("--journal")
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        try:
            result: dict[str, Any] | None = None
            deadline = time.monotonic() + args.seconds + 60
            while result is None and time.monotonic() < deadline:
                for proc in procs:
                    if proc.poll() is not None and proc.stdout is not None:
                        out = proc.stdout.read().strip()
                        if out:
                            result = json.loads(out.splitlines()[-1])
                            break
                        if proc.returncode != 0:
                            raise SystemExit(f"a node failed with exit code {proc.returncode}")
                time.sleep(0.1)
            if result is None:
                raise SystemExit("no result from the leader in time")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)
    result["journal"] = bool(args.journal)
    result["nproc"] = os.cpu_count()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=1000, help="commands in flight")
    parser.add_argument("--journal", action="store_true", help="use PySyncObj's file journal")
    parser.add_argument("--node", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ports", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node is not None:
        run_node(args)
        return
    result = run_group(args)
    print(
        f"pysyncobj 3-node group ({'journal' if result['journal'] else 'memory'}), "
        f"window {result['window']}: {result['commands_per_s']:.0f} commands/s committed, "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['committed']} in {result['seconds']} s, nproc {result['nproc']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

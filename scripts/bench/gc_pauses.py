"""Garbage-collection pauses of the replicas during a ``clob bench shard`` run.

    scripts/bench/gc_pauses.py [--min-ms 5] -- [clob bench shard options]

Runs ``clob bench shard`` (default ``--duration 5 --inflight 2000 --rate 2000
--kills 0``) with a probe loaded into every replica process (a
``sitecustomize`` module on ``PYTHONPATH`` that times each collection through
``gc.callbacks`` and writes the ones longer than ``--min-ms`` to the node's
log), then prints, per generation, how many such pauses there were and their
longest and mean duration, and when each full (generation 2) collection came
in its process's life: at start (before the replica tunes its collector), at
exit (the interpreter collects once more while it shuts down) or in between. docs/benchmarks.md,
section 4, quotes it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

_PROBE = """
import gc, os, sys, time

if os.environ.get("CLOB_GC_PROBE_MS") and " node " in " " + " ".join(sys.argv) + " ":
    _limit = float(os.environ["CLOB_GC_PROBE_MS"])
    _started = [0.0]
    _born = time.monotonic()

    def _probe(phase, info):
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - _started[0]) * 1e3
        if ms >= _limit:
            age = time.monotonic() - _born
            line = f"gc-pause generation={info['generation']} ms={ms:.1f} age={age:.1f}"
            sys.stderr.write(line + "\\n")

    gc.callbacks.append(_probe)
"""
_LINE = re.compile(r"gc-pause generation=(\d) ms=([0-9.]+) age=([0-9.]+)")
_DEFAULT = ["--duration", "5", "--inflight", "2000", "--rate", "2000", "--kills", "0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-ms", type=float, default=5.0, help="report pauses this long")
    parser.add_argument("bench_args", nargs="*", help="options for clob bench shard (after --)")
    args = parser.parse_args()
    clob = Path(sys.executable).with_name("clob")
    with tempfile.TemporaryDirectory() as tmp:
        probe_dir, work = Path(tmp) / "probe", Path(tmp) / "run"
        probe_dir.mkdir()
        (probe_dir / "sitecustomize.py").write_text(_PROBE)
        path = os.pathsep.join(p for p in (str(probe_dir), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "CLOB_GC_PROBE_MS": str(args.min_ms)}
        argv = [str(clob), "bench", "shard", *(args.bench_args or _DEFAULT), "--workdir", str(work)]
        bench = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        pauses: dict[int, list[float]] = defaultdict(list)
        full: list[str] = []  # generation-2 pauses: when in its process's life each came
        for log in sorted(work.glob("*.log")):
            found = list(_LINE.finditer(log.read_text(errors="replace")))
            for n, match in enumerate(found):
                generation, ms, age = int(match.group(1)), float(match.group(2)), match.group(3)
                pauses[generation].append(ms)
                if generation == 2:
                    last = " (the process's last)" if n == len(found) - 1 else ""
                    full.append(f"{log.stem} at {age} s: {ms:.1f} ms{last}")
    print(bench.stdout.strip())
    print(f"replica GC pauses of at least {args.min_ms:g} ms (3 replicas, nproc {os.cpu_count()}):")
    for generation in sorted(pauses):
        times = pauses[generation]
        print(
            f"  generation {generation}: {len(times)} pauses, longest {max(times):.1f} ms, "
            f"mean {statistics.mean(times):.1f} ms"
        )
    if not pauses:
        print("  none")
    for line in full:
        print(f"  full collection: {line}")


if __name__ == "__main__":
    main()

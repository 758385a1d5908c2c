"""Garbage-collection pauses of the servers during a ``clob bench shard`` or ``gateway`` run.

    scripts/bench/gc_pauses.py [--min-ms 5] [--bench shard|gateway] -- [bench options]

Runs ``clob bench shard`` (default ``--duration 5 --inflight 2000 --rate 2000
--kills 0``) or, with ``--bench gateway``, ``clob bench gateway`` (default
``--duration 5 --durability fsync --scenarios 1x1``) with a probe loaded into
every replica and gateway process (a ``sitecustomize`` module on
``PYTHONPATH`` that times each collection through ``gc.callbacks`` and
writes the ones longer than ``--min-ms`` to a file per process), then prints,
per kind of process and generation, how many such pauses there were and
their longest and mean duration, and when each full (generation 2)
collection came in its process's life: at start (before a replica tunes its
collector), at exit (the interpreter collects once more while it shuts down)
or in between. docs/benchmarks.md, sections 4 and 5, quote it.
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

_words = set(sys.argv)
_kind = "replica" if "node" in _words else "gateway" if "gateway" in _words else None
if os.environ.get("CLOB_GC_PROBE_MS") and _kind and "bench" not in _words:
    _limit = float(os.environ["CLOB_GC_PROBE_MS"])
    _out = open(os.path.join(os.environ["CLOB_GC_PROBE_DIR"], f"{_kind}-{os.getpid()}.log"), "a")
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
            _out.write(line + "\\n")
            _out.flush()

    gc.callbacks.append(_probe)
"""
_LINE = re.compile(r"gc-pause generation=(\d) ms=([0-9.]+) age=([0-9.]+)")
_DEFAULTS = {
    "shard": ["--duration", "5", "--inflight", "2000", "--rate", "2000", "--kills", "0"],
    "gateway": ["--duration", "5", "--durability", "fsync", "--scenarios", "1x1"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-ms", type=float, default=5.0, help="report pauses this long")
    parser.add_argument("--bench", choices=sorted(_DEFAULTS), default="shard")
    parser.add_argument("bench_args", nargs="*", help="options for the bench (after --)")
    args = parser.parse_args()
    clob = Path(sys.executable).with_name("clob")
    with tempfile.TemporaryDirectory() as tmp:
        probe_dir, out = Path(tmp) / "probe", Path(tmp) / "pauses"
        probe_dir.mkdir()
        out.mkdir()
        (probe_dir / "sitecustomize.py").write_text(_PROBE)
        path = os.pathsep.join(p for p in (str(probe_dir), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "CLOB_GC_PROBE_MS": str(args.min_ms),
               "CLOB_GC_PROBE_DIR": str(out)}  # fmt: skip
        argv = [str(clob), "bench", args.bench, *(args.bench_args or _DEFAULTS[args.bench])]
        bench = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        pauses: dict[tuple[str, int], list[float]] = defaultdict(list)
        full: list[str] = []  # generation-2 pauses: when in its process's life each came
        for log in sorted(out.glob("*.log")):
            kind = log.stem.split("-")[0]
            found = list(_LINE.finditer(log.read_text(errors="replace")))
            for n, match in enumerate(found):
                generation, ms, age = int(match.group(1)), float(match.group(2)), match.group(3)
                pauses[kind, generation].append(ms)
                if generation == 2:
                    last = " (the process's last)" if n == len(found) - 1 else ""
                    full.append(f"{log.stem} at {age} s: {ms:.1f} ms{last}")
    print(bench.stdout.strip())
    print(f"GC pauses of at least {args.min_ms:g} ms (nproc {os.cpu_count()}):")
    for (kind, generation), times in sorted(pauses.items()):
        print(
            f"  {kind} generation {generation}: {len(times)} pauses, "
            f"longest {max(times):.1f} ms, mean {statistics.mean(times):.1f} ms"
        )
    if not pauses:
        print("  none")
    for line in full:
        print(f"  full collection: {line}")


if __name__ == "__main__":
    main()

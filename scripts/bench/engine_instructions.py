"""Machine instructions per engine command, counted by valgrind's callgrind.

Wall time on this shared VM swings by up to 1.8x; instruction counts do not,
so engine changes are judged by them first (docs/benchmarks.md, section 1).

    scripts/bench/engine_instructions.py [--seed 7] [--commands 40000]

Builds the seeded `clob bench engine` workload in this process, then runs a
second process under callgrind that restores the book from a snapshot (so
the setup costs nothing) and executes the mixed commands, with collection
switched on only inside the compiled `Engine.execute`. Command keys are
interned and string values hashed first, as they are in the bench (the
workload generator's shadow engine has already hashed them there). Needs
valgrind and the compiled engine (`make native`).
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_SYMBOL = "CPyDef_engine___Engine___execute"


def _measured(workload: Path) -> None:
    """The process under callgrind: restore, then execute every mixed command."""
    import gc

    from clob.engine import Engine

    snapshot, first, mixed = pickle.loads(workload.read_bytes())
    commands: list[dict[str, Any]] = []
    for command in mixed:
        for value in command.values():
            if type(value) is str:
                hash(value)
        commands.append({sys.intern(key): value for key, value in command.items()})
    engine = Engine.restore(snapshot)
    gc.collect()
    gc.freeze()
    execute = engine.execute
    for seq, command in enumerate(commands, first):
        execute(command, seq)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--commands", type=int, default=40_000)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        _measured(args.measure)
        return
    import clob
    from cli.engine_workload import WorkloadGenerator
    from clob.engine import Engine

    if clob.build_kind() != "compiled (mypyc)" or shutil.which("valgrind") is None:
        sys.exit("needs valgrind and the compiled engine (make native)")
    setup, mixed = WorkloadGenerator(args.seed).build(args.commands)
    engine = Engine()
    for seq, command in enumerate(setup, 1):
        engine.execute(command, seq)
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "workload.pickle"
        workload.write_bytes(pickle.dumps((engine.snapshot(), len(setup) + 1, mixed)))
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             f"--toggle-collect={_SYMBOL}", sys.executable, __file__, "--measure", str(workload)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        sys.exit("callgrind printed no instruction count:\n" + run.stderr[-2000:])
    total = int(found.group(1))
    print(f"seed {args.seed}, {len(mixed):,} mixed commands after {len(setup):,} setup ones")
    print(f"instructions in Engine.execute: {total:,} ({total / len(mixed):,.0f} per command)")


if __name__ == "__main__":
    main()

"""The mypyc-compiled engine: stale-build detection, and byte-identical replays.

The compiled build is an optimisation only: `clob replay` of the same journal
must print exactly the same bytes with and without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import clob
from cli.engine_workload import WorkloadGenerator

CLOB = Path(sys.executable).with_name("clob")
SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


def test_a_source_newer_than_its_compiled_module_is_stale(tmp_path: Path) -> None:
    for name in ("book", "market"):
        (tmp_path / f"{name}.py").write_text("")
        (tmp_path / f"{name}{SUFFIX}").write_bytes(b"")
        os.utime(tmp_path / f"{name}.py", (1_000, 1_000))
        os.utime(tmp_path / f"{name}{SUFFIX}", (2_000, 2_000))
    assert clob.stale_modules(tmp_path) == []
    os.utime(tmp_path / "market.py", (3_000, 3_000))
    assert clob.stale_modules(tmp_path) == ["market.py"]
    assert [p.name for p in clob.compiled_modules(tmp_path)] == [
        f"book{SUFFIX}",
        f"market{SUFFIX}",
    ]


def test_pure_environment_loads_the_sources() -> None:
    probe = "import clob, clob.market; print(clob.build_kind(), clob.market.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=dict(os.environ, CLOB_PURE="1"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split()[:2] == ["pure", "Python"]
    assert done.stdout.strip().endswith("clob/market.py")


@pytest.mark.skipif(
    not clob.compiled_modules(),
    reason="no compiled engine here (`make native` skipped: no C compiler?)",
)
def test_compiled_and_pure_replays_are_byte_identical(tmp_path: Path) -> None:
    setup, mixed = WorkloadGenerator(seed=7, users=50, floor=200).build(20_000)
    lines = [orjson.dumps(c) for c in setup + mixed]
    # garbage and edge cases go through the same code in both builds
    lines[100:100] = [b"not json", b"[]", b'{"type": "new_order", "qty": 1.5}', b"{}"]
    journal = tmp_path / "journal.jsonl"
    journal.write_bytes(b"\n".join(lines) + b"\n")
    outputs = {}
    for pure in ("0", "1"):
        done = subprocess.run(
            [str(CLOB), "replay", str(journal)],
            env=dict(os.environ, CLOB_PURE=pure),
            capture_output=True,
            check=True,
            timeout=300,
        )
        outputs[pure] = done.stdout
    assert outputs["0"] == outputs["1"]
    assert outputs["0"].count(b"\n") >= len(lines)

"""`clob bench engine` runs end to end on a tiny workload and reports every figure."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

import cli.bench_engine  # noqa: F401 - registers the command
from cli.apps import app
from cli.engine_workload import WorkloadGenerator
from clob.engine import Engine


def test_bench_engine_json_report() -> None:
    result = CliRunner().invoke(
        app, ["bench", "engine", "--commands", "3000", "--resting", "2000", "--deep", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert report["commands"] == 3000 and report["cpu_count"] >= 1
    assert report["commands_per_s"] > 0 and report["events_per_s"] > 0
    # CPU time of this process cannot exceed the wall time it ran in (one thread)
    assert 0 < report["cpu_seconds"] <= report["seconds"] * 1.05 + 0.01
    assert report["commands_per_cpu_s"] >= report["commands_per_s"] * 0.9
    assert set(report["latency_us"]) == {"p50", "p99", "p99.9"}
    assert report["memory"]["resting_orders"] == 2000
    assert 50 < report["memory"]["bytes_per_resting_order"] < 5000
    assert report["depth"]["deep_book_us"] > 0
    assert abs(sum(report["mix"].values()) - 1) < 0.01
    # where the time goes, by kind: every command counted once, shares summing to one
    by_kind = report["by_kind"]
    assert sum(k["count"] for k in by_kind.values()) == 3000
    assert abs(sum(k["share"] for k in by_kind.values()) - 1) < 0.01
    orders = sum(k["count"] for kind, k in by_kind.items() if kind.startswith("new_order "))
    assert abs(orders - report["mix"]["new_order"] * 3000) <= 2  # the mix is rounded
    assert all(k["mean_us"] > 0 for k in by_kind.values())
    fok = report["depth"]["fok_unfillable_us"]
    assert set(fok) == {"100 orders at one price", "100,000 orders at one price"}


def test_workload_is_seeded_and_valid() -> None:
    first = WorkloadGenerator(5, floor=200).build(2000)
    second = WorkloadGenerator(5, floor=200).build(2000)
    assert first == second
    setup, mixed = first
    engine = Engine()
    rejected = 0
    for seq, command in enumerate(setup + mixed, 1):
        for event in engine.execute(command, seq):
            row = engine.encode(event)
            if row["type"] == "rejected":
                rejected += 1
                assert row["reason"] == "would_take", row  # post-only orders may cross
    assert rejected < len(mixed) // 20
    kinds = {c["type"] for c in mixed}
    assert {"new_order", "cancel", "amend"} <= kinds

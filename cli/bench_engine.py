"""``clob bench engine``: throughput, latency and memory of the matching engine.

The workload is generated (and checked against a shadow engine) before any
timing starts, so the timers measure ``Engine.execute`` only. Three parts:

1. throughput: the mixed workload through a fresh engine, no per-command timer;
2. latency: the same workload again with a timer around each command
   (p50/p99/p99.9 from an HdrHistogram);
3. memory: a separate build of ``--resting`` resting orders measured with
   tracemalloc (bytes held by the engine per resting order).

``--deep`` adds the book-depth experiment: the same probe commands against a
small book and a book of 100,000 orders over 10,000 levels.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

import orjson
import typer
from hdrh.histogram import HdrHistogram

import clob
from cli.apps import bench_app
from cli.engine_workload import MARKETS, START_MID, WorkloadGenerator, resting_orders
from clob.engine import Engine
from shard.node.gctuning import tune_for_throughput, untune

Command = dict[str, Any]


def _progress(label: str, done: int, total: int) -> None:
    sys.stderr.write(f"\r{label}: {done:,}/{total:,} ({100 * done // max(total, 1)}%)   ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _fresh(setup: list[Command]) -> Engine:
    engine = Engine()
    for seq, command in enumerate(setup, 1):
        engine.execute(command, seq)
    return engine


def _throughput(setup: list[Command], mixed: list[Command]) -> tuple[float, float, int, Engine]:
    """Wall seconds, CPU seconds and events for ``mixed`` on a fresh engine.

    CPU time (this process only) is reported beside wall time because on a
    shared machine other processes take the cores away mid-run; it still
    counts cache and memory stalls, so it is not a free pass.
    """
    engine = _fresh(setup)
    execute = engine.execute
    first = len(setup) + 1
    events = 0
    elapsed = cpu = 0.0
    chunk = 50_000
    for start in range(0, len(mixed), chunk):
        part = mixed[start : start + chunk]
        began, began_cpu = time.perf_counter(), time.process_time()
        for seq, command in enumerate(part, first + start):
            events += len(execute(command, seq))
        elapsed += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
        _progress("throughput", start + len(part), len(mixed))
    return elapsed, cpu, events, engine


def _latency(
    setup: list[Command], mixed: list[Command]
) -> tuple[HdrHistogram, dict[str, dict[str, float]]]:
    """Per-command latency in nanoseconds (a timer around each execute), and by kind of
    command its count, mean microseconds and share of the time (where the time goes)."""
    engine = _fresh(setup)
    execute = engine.execute
    clock = time.perf_counter_ns
    samples = [0] * len(mixed)
    first = len(setup) + 1
    for i, command in enumerate(mixed):
        began = clock()
        execute(command, first + i)
        samples[i] = clock() - began
    histogram = HdrHistogram(1, 10_000_000_000, 3)
    totals: dict[str, list[int]] = {}  # kind -> [count, nanoseconds]
    for command, value in zip(mixed, samples, strict=True):
        histogram.record_value(max(1, value))
        entry = totals.setdefault(_kind(command), [0, 0])
        entry[0] += 1
        entry[1] += value
    spent = max(1, sum(samples))
    by_kind = {
        kind: {"count": n, "mean_us": round(ns / n / 1000, 2), "share": round(ns / spent, 3)}
        for kind, (n, ns) in sorted(totals.items(), key=lambda item: -item[1][1])
    }
    return histogram, by_kind


def _kind(command: Command) -> str:
    """``new_order`` split by type and time in force (``new_order limit/ioc``), else the type."""
    kind = str(command.get("type"))
    if kind == "new_order":
        order_type = command.get("order_type", "limit")
        tif = command.get("tif", "gtc" if order_type == "limit" else "ioc")
        return f"new_order {order_type}/{tif}"
    return kind


def _resting_memory(count: int) -> dict[str, Any]:
    """Bytes the engine holds per resting order, for ``count`` resting orders."""
    gc.collect()
    tracemalloc.start()
    engine = Engine()
    engine.execute(
        {"type": "create_market", "market": MARKETS[0], "tick_size": "0.01", "lot_size": "0.001"},
        0,
    )
    base = tracemalloc.get_traced_memory()[0]
    step = max(1, count // 20)
    for seq, command in enumerate(resting_orders(count, levels=2000), 1):
        engine.execute(command, seq)
        if seq % step == 0:
            _progress("resting build", seq, count)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    market = engine.markets[MARKETS[0]]
    assert market.live == count, "resting build must not trade"
    return {
        "resting_orders": count,
        "levels": len(market.bids.levels) + len(market.asks.levels),
        "bytes_per_resting_order": round(held / max(count, 1), 1),
    }


def _deep_probe(resting: int, levels: int, probes: int) -> float:
    """Mean microseconds per probe command against a book of the given shape.

    Probes: a passive order at a fresh price deep inside the book (creates a
    level), its cancel (removes the level), and a small IOC taking the best
    level (partial fill): the operations whose cost depends on the depth.
    """
    engine = Engine()
    market = MARKETS[0]
    engine.execute({"type": "create_market", "market": market, "tick_size": "0.01",
                    "lot_size": "0.001"}, 0)  # fmt: skip
    for seq, command in enumerate(resting_orders(resting, levels), 1):
        engine.execute(command, seq)
    mid = START_MID[market]
    commands: list[Command] = []
    for i in range(probes):
        # a fresh level strictly between existing ones is impossible with whole
        # ticks, so place beyond the far end, then cancel it again
        price = mid - levels // 2 - 1 - i % 50
        commands.append({"type": "new_order", "market": market, "user": "probe",
                         "client_order_id": f"p{i}", "side": "buy", "order_type": "limit",
                         "price": f"{price // 100}.{price % 100:02d}", "qty": "0.001"})  # fmt: skip
        commands.append({"type": "cancel", "market": market, "user": "probe",
                         "client_order_id": f"p{i}"})  # fmt: skip
        commands.append({"type": "new_order", "market": market, "user": "taker",
                         "side": "sell", "order_type": "limit", "tif": "ioc",
                         "price": f"{(mid - 1) // 100}.{(mid - 1) % 100:02d}",
                         "qty": "0.001"})  # fmt: skip
    execute = engine.execute
    began = time.perf_counter()
    for seq, command in enumerate(commands, resting + 1):
        execute(command, seq)
    return (time.perf_counter() - began) / len(commands) * 1e6


def _fok_probe(resting: int, probes: int) -> float:
    """Mean microseconds per FOK buy that cannot fill, against ``resting`` one-lot asks of
    other users at one price: it changes nothing, so a user may repeat it at will, and its
    cost must not grow with the orders resting (the pre-walk counts a level by its total)."""
    engine = Engine()
    market = MARKETS[0]
    engine.execute({"type": "create_market", "market": market, "tick_size": "0.01",
                    "lot_size": "1"}, 0)  # fmt: skip
    for seq in range(1, resting + 1):
        engine.execute({"type": "new_order", "market": market, "user": f"m{seq % 50}",
                        "side": "sell", "order_type": "limit", "price": "100.00",
                        "qty": "1"}, seq)  # fmt: skip
    fok = {"type": "new_order", "market": market, "user": "probe", "side": "buy",
           "order_type": "limit", "price": "100.00", "qty": str(resting + 1),
           "tif": "fok"}  # fmt: skip
    execute = engine.execute
    began = time.perf_counter()
    for seq in range(resting + 1, resting + 1 + probes):
        execute(fok, seq)
    return (time.perf_counter() - began) / probes * 1e6


@bench_app.command("engine")
def bench_engine(
    commands: int = typer.Option(300_000, "--commands", help="Mixed commands to time."),
    seed: int = typer.Option(1, "--seed", help="Workload seed."),
    resting: int = typer.Option(
        100_000, "--resting", help="Resting orders for the bytes-per-order measure (0: skip)."
    ),
    deep: bool = typer.Option(False, "--deep", help="Also compare a deep book with a small one."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    gc_policy: str = typer.Option(
        "replica",
        "--gc",
        help="Garbage collector: 'replica' (the settings replica processes run with: "
        "objects alive before the timing frozen, rare collections) or 'default' (CPython's).",
    ),
) -> None:
    """Benchmark the matching engine on a seeded realistic workload."""
    if gc_policy not in ("replica", "default"):
        raise typer.BadParameter("must be 'replica' or 'default'", param_hint="--gc")
    generator = WorkloadGenerator(seed)
    setup, mixed = generator.build(
        commands, progress=lambda done: _progress("generating", done, commands)
    )
    _progress("generating", commands, commands)
    # the generator's shadow engine is not what is measured: drop it so the
    # garbage collector does not keep re-walking its objects during the timing
    del generator
    kinds: dict[str, int] = {}
    for command in mixed:
        kinds[command["type"]] = kinds.get(command["type"], 0) + 1
    gc.collect()
    thresholds = gc.get_threshold()
    if gc_policy == "replica":
        tune_for_throughput()
    try:
        result = _measure(setup, mixed, resting, deep)
    finally:  # leave the collector as it was (the command also runs inside tests)
        untune(thresholds)
    result["engine_build"] = clob.build_kind()
    result["gc"] = gc_policy
    result["seed"] = seed
    result["mix"] = {k: round(v / len(mixed), 3) for k, v in sorted(kinds.items())}
    _report(result, as_json)


def _measure(
    setup: list[Command], mixed: list[Command], resting: int, deep: bool
) -> dict[str, Any]:
    """Throughput, latency, book shape and (optionally) memory and depth figures."""
    elapsed, cpu, events, engine = _throughput(setup, mixed)
    shape = {
        name: {
            "levels": len(m.bids.levels) + len(m.asks.levels),
            "resting_orders": m.live,
        }
        for name, m in engine.markets.items()
    }
    del engine
    histogram, by_kind = _latency(setup, mixed)
    result: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        # other processes on the machine skew every figure; show how busy it was
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "commands": len(mixed),
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(mixed) / elapsed),
        "events_per_s": round(events / elapsed),
        "cpu_seconds": round(cpu, 3),
        "commands_per_cpu_s": round(len(mixed) / max(cpu, 1e-9)),
        "latency_us": {
            "p50": histogram.get_value_at_percentile(50) / 1000,
            "p99": histogram.get_value_at_percentile(99) / 1000,
            "p99.9": histogram.get_value_at_percentile(99.9) / 1000,
        },
        "final_book": shape,
        "by_kind": by_kind,
    }
    if resting:
        result["memory"] = _resting_memory(resting)
    if deep:
        result["depth"] = {
            "small_book_us": round(_deep_probe(1_000, 100, 3_000), 3),
            "deep_book_us": round(_deep_probe(100_000, 10_000, 3_000), 3),
            "small": "1,000 orders / 100 levels",
            "deep": "100,000 orders / 10,000 levels",
            "fok_unfillable_us": {
                "100 orders at one price": round(_fok_probe(100, 2_000), 3),
                "100,000 orders at one price": round(_fok_probe(100_000, 2_000), 3),
            },
        }
    # peak resident memory of this process (Linux reports KiB)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps(result).decode())
        return
    typer.echo(f"cores (os.cpu_count): {result['cpu_count']}  "
               f"load average (1 min): {result['load_avg_1m']}  "
               f"engine: {result['engine_build']}  gc: {result['gc']}")  # fmt: skip
    typer.echo(f"commands: {result['commands']:,}  mix: {result['mix']}")
    typer.echo(f"throughput: {result['commands_per_s']:,} commands/s, "
               f"{result['events_per_s']:,} events/s "
               f"(per CPU second of this process: {result['commands_per_cpu_s']:,})")  # fmt: skip
    lat = result["latency_us"]
    typer.echo(f"latency per command (us): p50 {lat['p50']}  p99 {lat['p99']}  "
               f"p99.9 {lat['p99.9']}")  # fmt: skip
    typer.echo(f"final book: {result['final_book']}")
    typer.echo("time by kind (timed one by one): " + ", ".join(
        f"{kind} {k['share']:.0%} ({k['mean_us']} us x {k['count']:,})"
        for kind, k in result["by_kind"].items()))  # fmt: skip
    if "memory" in result:
        mem = result["memory"]
        typer.echo(f"memory: {mem['bytes_per_resting_order']} bytes per resting order "
                   f"({mem['resting_orders']:,} orders over {mem['levels']:,} levels)")  # fmt: skip
    if "depth" in result:
        d = result["depth"]
        typer.echo(f"depth: small book {d['small_book_us']} us/cmd ({d['small']}), "
                   f"deep book {d['deep_book_us']} us/cmd ({d['deep']})")  # fmt: skip
        fok = ", ".join(f"{us} us against {shape}" for shape, us in d["fok_unfillable_us"].items())
        typer.echo(f"unfillable FOK: {fok}")
    typer.echo(f"peak RSS: {result['peak_rss_mib']} MiB")

"""Single-threaded order-book throughput: lobby, pyorderbook and our engine (comparison figure).

Runs in the separate bench venv (scripts/bench-compare.sh), where lobby and
pyorderbook are installed; our engine is imported from the repository root.
All three books get the same seeded workload of limit orders (about half of
them cross and trade) and cancels (a cancel targets a recent order, which
may already be filled, as in real traffic). Inputs are built before the
clock starts, so the timed loop is the books' own public calls only.

Our engine runs with its richer rules switched on: every order carries a
``client_order_id``, cancels address orders by it, orders come from many
users with self-trade prevention (``stp``), and every command is validated
and produces events. lobby and pyorderbook have none of these (no users, no
validation, no self-trade prevention), so the comparison favours them.

    python scripts/bench/books.py --ops 200000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# An operation: ("add", index, side, price_ticks, qty_lots, user) or ("cancel", index).
Op = tuple[Any, ...]

TICKS_PER_UNIT = 100  # tick size 0.01
MID = 10_000  # 100.00 in ticks


def make_workload(ops: int, seed: int, users: int) -> list[Op]:
    rng = random.Random(seed)
    out: list[Op] = []
    adds = 0
    for _ in range(ops):
        if adds > 10 and rng.random() < 0.35:
            target = rng.randrange(max(0, adds - 500), adds)
            out.append(("cancel", target))
            continue
        side = "buy" if rng.random() < 0.5 else "sell"
        # Buys cluster below the mid and sells above, overlapping by a few ticks,
        # so a good share of orders cross and trade against resting ones.
        offset = rng.randint(-12, 4)
        price = MID + offset if side == "buy" else MID - offset
        out.append(("add", adds, side, price, rng.randint(1, 10), f"u{rng.randrange(users)}"))
        adds += 1
    return out


def _price_text(ticks: int) -> str:
    return f"{ticks // TICKS_PER_UNIT}.{ticks % TICKS_PER_UNIT:02d}"


def bench_lobby(workload: list[Op]) -> tuple[float, float, int]:
    from lobby.orderbook import OrderBook

    book = OrderBook(price_digits=2)
    inputs: list[Any] = []
    for op in workload:
        if op[0] == "add":
            _, index, side, price, qty, _user = op
            quote = {
                "type": "limit",
                "side": "bid" if side == "buy" else "ask",
                "qty": qty,
                "price": price / TICKS_PER_UNIT,  # lobby's API takes float prices
                "tid": index,
            }
            inputs.append((True, index, quote))
        else:
            inputs.append((False, op[1], None))
    resting: dict[int, tuple[str, int]] = {}
    trades = 0
    begin, begin_cpu = time.perf_counter(), time.process_time()
    for is_add, index, quote in inputs:
        if is_add:
            done, in_book = book.processOrder(quote, False, False)
            trades += len(done)
            if in_book is not None:
                resting[index] = (quote["side"], in_book["idNum"])
        else:
            found = resting.pop(index, None)
            if found is not None:
                book.cancelOrder(found[0], found[1])
    return time.perf_counter() - begin, time.process_time() - begin_cpu, trades


def bench_pyorderbook(workload: list[Op]) -> tuple[float, float, int]:
    import pyorderbook

    book = pyorderbook.Book()
    inputs: list[Any] = []
    for op in workload:
        if op[0] == "add":
            _, index, side, price, qty, _user = op
            make = pyorderbook.bid if side == "buy" else pyorderbook.ask
            inputs.append((index, make("BTC-USD", Decimal(_price_text(price)), qty)))
        else:
            inputs.append((op[1], None))
    orders: dict[int, Any] = {}
    trades = 0
    begin, begin_cpu = time.perf_counter(), time.process_time()
    for index, order in inputs:
        if order is not None:
            blotter = book.match(order)
            trades += len(blotter.trades)
            orders[index] = order
        else:
            target = orders.pop(index, None)
            if target is not None and book.get_order(target.id) is not None:
                book.cancel(target)
    return time.perf_counter() - begin, time.process_time() - begin_cpu, trades


def _engine_commands(workload: list[Op]) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = []
    users: dict[int, str] = {}
    for op in workload:
        if op[0] == "add":
            _, index, side, price, qty, user = op
            users[index] = user
            commands.append(
                {
                    "type": "new_order",
                    "market": "BTC-USD",
                    "user": user,
                    "client_order_id": f"c{index}",
                    "side": side,
                    "order_type": "limit",
                    "price": _price_text(price),
                    "qty": f"0.{qty:03d}" if qty < 1000 else str(qty),
                    "tif": "gtc",
                    "post_only": False,
                    "stp": "cancel_taker",
                }
            )
        else:
            commands.append(
                {
                    "type": "cancel",
                    "market": "BTC-USD",
                    "user": users[op[1]],
                    "client_order_id": f"c{op[1]}",
                }
            )
    return commands


def bench_engine(workload: list[Op], *, encode: bool) -> tuple[float, float, int]:
    sys.path.insert(0, str(ROOT))
    from clob.engine import Engine

    engine = Engine()
    engine.execute(
        {"type": "create_market", "market": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"},
        1,
    )
    commands = _engine_commands(workload)
    trades = 0
    execute = engine.execute
    begin, begin_cpu = time.perf_counter(), time.process_time()
    if encode:
        encode_event = engine.encode
        for seq, command in enumerate(commands, start=2):
            rows = [encode_event(e) for e in execute(command, seq)]
            trades += sum(1 for row in rows if row["type"] == "fill")
    else:
        for seq, command in enumerate(commands, start=2):
            trades += sum(1 for e in execute(command, seq) if type(e).__name__ == "Fill")
    return time.perf_counter() - begin, time.process_time() - begin_cpu, trades


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--skip-engine", action="store_true", help="without our engine")
    parser.add_argument("--repeat", type=int, default=3, help="runs per book; best is kept")
    args = parser.parse_args()
    workload = make_workload(args.ops, args.seed, args.users)
    benches: list[tuple[str, Callable[[list[Op]], tuple[float, int]]]] = [
        ("lobby 0.1.3", bench_lobby),
        ("pyorderbook 0.4.9", bench_pyorderbook),
    ]
    if not args.skip_engine:
        benches.append(("clob engine (execute)", lambda w: bench_engine(w, encode=False)))
        benches.append(("clob engine (execute+encode)", lambda w: bench_engine(w, encode=True)))
    results = []
    sys.path.insert(0, str(ROOT))
    import clob

    print(
        f"{len(workload)} operations, seed {args.seed}, nproc {os.cpu_count()}, "
        f"clob engine {clob.build_kind()}"
    )
    for name, bench in benches:
        # best of --repeat runs, each on a fresh book: the machine is shared, and
        # CPU time (process_time) is what the code costs when it is not descheduled
        runs = [bench(workload) for _ in range(args.repeat)]
        wall = min(r[0] for r in runs)
        cpu = min(r[1] for r in runs)
        trades = runs[0][2]
        results.append(
            {
                "book": name,
                "ops_per_s": round(len(workload) / wall),
                "ops_per_cpu_s": round(len(workload) / cpu),
                "trades": trades,
            }
        )
        print(
            f"  {name:<30} {len(workload) / wall:>10,.0f} ops/s wall "
            f"{len(workload) / cpu:>10,.0f} ops/s CPU   {trades:>8} trades"
        )
    by_name = {r["book"]: r for r in results}
    lobby = by_name.get("lobby 0.1.3")
    ours = by_name.get("clob engine (execute)")
    if lobby and ours:
        print(
            f"  clob engine / lobby: {ours['ops_per_s'] / lobby['ops_per_s']:.2f}x wall, "
            f"{ours['ops_per_cpu_s'] / lobby['ops_per_cpu_s']:.2f}x CPU"
        )
    print(
        json.dumps(
            {
                "ops": len(workload),
                "seed": args.seed,
                "repeat": args.repeat,
                "nproc": os.cpu_count(),
                "clob_engine": clob.build_kind(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()

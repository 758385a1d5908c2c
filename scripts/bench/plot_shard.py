"""Throughput against latency of one replica group: a sweep of ``clob bench shard``, plotted.

Runs in the bench venv (matplotlib is not a project dependency); the
benchmark itself runs with the project's own ``clob`` (``--clob``). For each
offered rate it runs ``clob bench shard --rate R --json`` (open loop, latency
measured from when each order was due) and plots the achieved rate against
p50 and p99 latency.

    var/bench-venv/bin/python scripts/bench/plot_shard.py \\
        --rates 250,500,1000,2000,4000,8000 --duration 5 \\
        --out docs/img/shard-throughput-latency.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_point(clob: str, rate: int, duration: float, durability: str) -> dict[str, Any] | None:
    """One ``clob bench shard`` run's report, or None (and its error shown) when it failed."""
    cmd = [
        clob, "bench", "shard", "--rate", str(rate), "--duration", str(duration),
        "--kills", "0", "--durability", durability, "--json",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        print(f"rate {rate}/s: clob bench shard failed (exit {done.returncode}):\n{tail}")
        return None
    report: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="250,500,1000,2000,4000,8000")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--durability", default="fsync")
    parser.add_argument("--clob", default=str(ROOT / ".venv" / "bin" / "clob"))
    parser.add_argument(
        "--out", default=str(ROOT / "docs" / "img" / "shard-throughput-latency.png")
    )
    args = parser.parse_args()
    points = []
    for rate in (int(r) for r in args.rates.split(",")):
        report = run_point(args.clob, rate, args.duration, args.durability)
        if report is None:
            continue
        latency = report["latency"]
        points.append(
            {
                "offered": rate,
                "achieved": latency["achieved_rate"],
                "p50_ms": latency["p50_ms"],
                "p99_ms": latency["p99_ms"],
                "failures": latency["failures"],
                "closed_loop_max": report.get("throughput", {}).get("orders_per_s"),
            }
        )
        print(json.dumps(points[-1]), flush=True)

    if not points:
        raise SystemExit("no benchmark point succeeded: nothing to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    achieved = [p["achieved"] for p in points]
    ax.plot(achieved, [p["p50_ms"] for p in points], "o-", label="p50")
    ax.plot(achieved, [p["p99_ms"] for p in points], "s-", label="p99")
    for p in points:
        ax.annotate(f"{p['offered']}/s", (p["achieved"], p["p99_ms"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("acknowledged orders/s (open loop; labels: offered rate)")
    ax.set_ylabel("submit-to-acknowledgement latency (ms)")
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    ax.set_title(
        f"One market, 3 replicas ({args.durability}), 127.0.0.1, nproc {os.cpu_count()}, {stamp}"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

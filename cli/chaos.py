"""``clob chaos``: run the replicated system under seeded faults and check what clients saw.

Starts a local cluster (2 markets x 3 replicas + 2 gateways, Raft links
through fault-injecting proxies), runs concurrent seeded clients while
killing, pausing, partitioning, corrupting and replacing replicas, then
heals, collects every replica's committed history and checks it against the
client history
(see :mod:`chaos.checker`). Prints progress and a report; exits 1 when any
violation was found (the run directory is then kept for investigation).
"""

from __future__ import annotations

import re
from pathlib import Path

import trio
import typer

from chaos.kinds import FAULT_KINDS as FAULT_KINDS  # re-exported
from cli.apps import app
from shard.observability import configure_logging

# The harness (chaos.run and what it imports) loads only when ``clob chaos`` runs, so
# every other ``clob`` command, replica and gateway processes included, starts faster.

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"1.5h"`` or plain seconds; raises ValueError."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"expected a duration such as 90s or 10m, got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


@app.command()
def chaos(
    duration: str = typer.Option("90s", help="How long the workload runs under faults."),
    seed: int = typer.Option(1, help="Seed of the workload and of the fault schedule."),
    clients: int = typer.Option(6, help="Concurrent workload clients (one user each)."),
    faults: str = typer.Option(
        ",".join(FAULT_KINDS), help="Comma-separated fault kinds to draw from."
    ),
    durability: str = typer.Option("fsync", help="Replica durability: fsync or none."),
    directory: str | None = typer.Option(
        None, "--dir", help="Run directory (kept); a temporary one by default."
    ),
    keep: bool = typer.Option(False, help="Keep the run directory even without violations."),
    log_level: str = typer.Option("WARNING", help="Log level of the chaos harness itself."),
    snapshot_every: int | None = typer.Option(
        None,
        min=1,
        help="Applied entries between the replicas' snapshots (default: the node's); "
        "small values exercise log compaction and snapshot installs.",
    ),
    tls: bool = typer.Option(
        False,
        "--tls",
        help="Mutual TLS on every replica link (through the fault proxies) and wss:// "
        "gateways, under a CA made for the run.",
    ),
) -> None:
    """Run seeded faults against a local cluster and check linearizability and durability."""
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--duration") from exc
    kinds = tuple(k.strip() for k in faults.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        raise typer.BadParameter(
            f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}",
            param_hint="--faults",
        )
    if durability not in ("fsync", "none"):
        raise typer.BadParameter("expected fsync or none", param_hint="--durability")
    from chaos.run import ChaosSettings, run_chaos

    configure_logging(log_level)
    settings = ChaosSettings(
        seed=seed,
        seconds=seconds,
        clients=clients,
        durability=durability,
        kinds=kinds,
        root=Path(directory) if directory else None,
        keep=keep,
        snapshot_every=snapshot_every,
        tls=tls,
    )
    result = trio.run(run_chaos, settings, typer.echo)
    typer.echo("")
    typer.echo(result.report)
    if result.kept:
        typer.echo(f"\nrun directory: {result.root}")
    if result.violations:
        raise typer.Exit(1)

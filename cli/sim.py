"""``clob sim``: run the deterministic fault simulator of the consensus core.

One run: ``clob sim --seed 7 --steps 2000``. A soak: ``clob sim --seeds 0..499``.
Exits 1 on the first safety or liveness violation, printing the seed and the
trace of the last events, so ``clob sim --seed N`` replays it exactly.
"""

from __future__ import annotations

import time

import typer

from cli.apps import app
from shard.sim.cluster import SimConfig, SimResult, run_simulation


def _parse_range(text: str) -> range:
    lo, sep, hi = text.partition("..")
    if not sep:
        raise typer.BadParameter("expected A..B, e.g. 0..99 (inclusive)")
    try:
        a, b = int(lo), int(hi)
    except ValueError as exc:
        raise typer.BadParameter(f"not a seed range: {text}") from exc
    if b < a:
        raise typer.BadParameter("the range is empty")
    return range(a, b + 1)


def _report_failure(result: SimResult, trace_lines: int) -> None:
    typer.echo(f"seed {result.seed}: VIOLATION after {result.steps} ticks", err=True)
    typer.echo(f"  {result.error}", err=True)
    typer.echo(f"--- last {trace_lines} events ---", err=True)
    lines = result.trace.splitlines()
    typer.echo("\n".join(lines[-trace_lines:]), err=True)
    typer.echo(f"replay with: clob sim --seed {result.seed} (same other options)", err=True)


@app.command("sim")
def sim(
    seed: int = typer.Option(0, help="Seed of a single run."),
    seeds: str | None = typer.Option(None, help="Soak over an inclusive range, e.g. 0..499."),
    steps: int = typer.Option(1500, help="Ticks of faults and traffic before healing."),
    nodes: int = typer.Option(3, help="Initial voters (3 or 5 are typical)."),
    app_name: str = typer.Option("register", "--app", help="register (fast) or engine."),
    profile: str = typer.Option("default", help="Fault profile: default or bug-hunting."),
    trace_lines: int = typer.Option(60, help="Events to print on a violation."),
    unsafe_commit_old_terms: bool = typer.Option(
        False, help="Plant the Figure 8 bug (§5.4.2) to see the checker catch it."
    ),
) -> None:
    """Simulate a replica group under crashes, partitions and message chaos."""
    if app_name not in ("register", "engine"):
        raise typer.BadParameter("--app must be register or engine")
    if profile not in ("default", "bug-hunting"):
        raise typer.BadParameter("--profile must be default or bug-hunting")
    run_seeds = _parse_range(seeds) if seeds else range(seed, seed + 1)
    started = time.perf_counter()
    for done, s in enumerate(run_seeds, 1):
        config = SimConfig.profile(
            profile,
            s,
            nodes=nodes,
            steps=steps,
            app=app_name,
            unsafe_commit_old_terms=unsafe_commit_old_terms,
        )
        result = run_simulation(config)
        if not result.ok:
            _report_failure(result, trace_lines)
            raise typer.Exit(1)
        if seeds is None:
            st = result.stats
            typer.echo(
                f"seed {s}: ok in {time.perf_counter() - started:.2f}s; ticks={st['now']} "
                f"committed={st['committed']} acked={st.get('acked', 0)} "
                f"elections={st.get('elections', 0)} crashes={st.get('crashes', 0)} "
                f"partitions={st.get('partitions', 0)} snapshots={st.get('snapshots', 0)} "
                f"membership={st.get('membership_changes', 0)} reads={st.get('reads', 0)} "
                f"messages={st['messages']}"
            )
        elif done % 10 == 0 or done == len(run_seeds):
            elapsed = time.perf_counter() - started
            typer.echo(f"{done}/{len(run_seeds)} seeds ok (last {s}), {elapsed:.1f}s")

"""``clob sim``: one run, a soak, and a planted bug that must fail with a trace."""

from __future__ import annotations

from typer.testing import CliRunner

import cli.sim  # noqa: F401  (registers the command)
from cli.apps import app
from shard.sim.cluster import SimConfig, run_simulation

runner = CliRunner()


def test_single_run_prints_a_summary() -> None:
    result = runner.invoke(app, ["sim", "--seed", "3", "--steps", "300"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("seed 3: ok")


def test_soak_prints_progress() -> None:
    result = runner.invoke(app, ["sim", "--seeds", "0..9", "--steps", "150", "--nodes", "5"])
    assert result.exit_code == 0, result.output
    assert "10/10 seeds ok (last 9)" in result.output


def test_violation_exits_nonzero_with_seed_and_trace() -> None:
    seed = next(
        s
        for s in range(300)
        if not run_simulation(SimConfig.bug_hunting(s, unsafe_commit_old_terms=True)).ok
    )
    args = ["sim", "--seed", str(seed), "--profile", "bug-hunting", "--unsafe-commit-old-terms"]
    result = runner.invoke(app, [*args, "--trace-lines", "20"])
    assert result.exit_code == 1
    assert f"seed {seed}: VIOLATION" in result.output
    assert "--- last 20 events ---" in result.output
    assert "t=" in result.output and f"clob sim --seed {seed}" in result.output


def test_bad_range_is_a_usage_error() -> None:
    result = runner.invoke(app, ["sim", "--seeds", "9..3"])
    assert result.exit_code == 2
